"""Draws the add-on's icon.png (128x128) and logo.png (250x100): a speech waveform on a rounded tile.

Our own art, generated with numpy and zlib only (no fonts, no third-party images), so it can be regenerated
anywhere:

    python script/addon_icons.py [OUT_DIR]      (default: addon/)
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np

SUPERSAMPLE = 4  # drawn at 4x and averaged down: smooth edges without an anti-aliasing library
TOP = np.array([64, 96, 224], dtype=np.float64)  # tile gradient, top-left colour (blue)
BOTTOM = np.array([128, 64, 200], dtype=np.float64)  # bottom-right colour (violet)
WHITE = np.array([255, 255, 255], dtype=np.float64)
# Bar heights of the waveform, as a fraction of the usable height (a stylised spoken phrase).
ICON_BARS = (0.25, 0.5, 0.85, 0.6, 1.0, 0.7, 0.4, 0.2)
LOGO_BARS = (0.15, 0.3, 0.55, 0.8, 0.5, 1.0, 0.75, 0.45, 0.9, 0.6, 0.35, 0.7, 0.4, 0.2, 0.1)


def rounded_rect_mask(height: int, width: int, radius: float) -> np.ndarray:
    """Boolean mask of a rounded rectangle filling the whole canvas."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    cx = np.clip(x, radius, width - radius)
    cy = np.clip(y, radius, height - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def bars_mask(height: int, width: int, bars: tuple[float, ...], margin: float) -> np.ndarray:
    """Boolean mask of vertically centred bars with rounded ends, spread across the width."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    mask = np.zeros((height, width), dtype=bool)
    usable_w = width - 2 * margin
    pitch = usable_w / len(bars)
    half_w = pitch * 0.3
    max_half_h = (height - 2 * margin) / 2
    for i, level in enumerate(bars):
        cx = margin + pitch * (i + 0.5)
        half_h = max(level * max_half_h, half_w)
        # A capsule: the segment from (cx, mid - half_h + half_w) to (cx, mid + half_h - half_w), thickened.
        top, bottom = height / 2 - half_h + half_w, height / 2 + half_h - half_w
        dy = np.clip(y, top, bottom)
        mask |= (x - cx) ** 2 + (y - dy) ** 2 <= half_w**2
    return mask


def render(width: int, height: int, bars: tuple[float, ...], radius: float, margin: float) -> np.ndarray:
    """RGBA image (uint8, height x width x 4)."""
    w, h = width * SUPERSAMPLE, height * SUPERSAMPLE
    tile = rounded_rect_mask(h, w, radius * SUPERSAMPLE)
    wave = bars_mask(h, w, bars, margin * SUPERSAMPLE) & tile
    y, x = np.mgrid[0:h, 0:w]
    t = ((x / w + y / h) / 2)[..., None]
    rgb = TOP * (1 - t) + BOTTOM * t
    rgb = np.where(wave[..., None], WHITE, rgb)
    alpha = tile.astype(np.float64)[..., None] * 255
    rgba = np.concatenate([rgb * tile[..., None], alpha], axis=-1)
    # Average each SUPERSAMPLE x SUPERSAMPLE block; colour is premultiplied above, so divide by alpha after.
    blocks = rgba.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE, 4).mean(axis=(1, 3))
    a = blocks[..., 3:4]
    colour = np.where(a > 0, blocks[..., :3] * 255 / np.maximum(a, 1e-9), 0)
    return np.concatenate([colour, a], axis=-1).round().clip(0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """Encodes an RGBA uint8 array as a PNG file."""
    height, width, _ = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "addon"
    out.mkdir(parents=True, exist_ok=True)
    (out / "icon.png").write_bytes(png_bytes(render(128, 128, ICON_BARS, radius=24, margin=20)))
    (out / "logo.png").write_bytes(png_bytes(render(250, 100, LOGO_BARS, radius=20, margin=14)))
    print(f"wrote {out / 'icon.png'} and {out / 'logo.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
