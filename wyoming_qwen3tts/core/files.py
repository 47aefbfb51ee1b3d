"""The one atomic-write helper: write to a temp file in the target's directory, fsync, then `os.replace`,
so a reader never sees a half-written file and a failure leaves the old one in place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Optional


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """`file` is the temp file; `commit()` publishes it at `path`, `discard()` (or an exception in a
    `with` block) removes it. `mode`: the published file's permissions (default: what open() would give)."""

    def __init__(self, path: Path, mode: Optional[int] = None, suffix: str = ".tmp") -> None:
        self.path = Path(path)
        self.mode = 0o666 & ~_umask() if mode is None else mode
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=suffix, dir=self.path.parent)
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.chmod(self.tmp, self.mode)  # mkstemp makes it 0600
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write_bytes(path: Path, data: bytes, mode: Optional[int] = 0o644) -> None:
    """Write `data` to `path` atomically."""
    with AtomicFile(path, mode) as out:
        out.write(data)
