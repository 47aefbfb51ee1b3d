"""The codec decoder alone, on the server's streaming call pattern, old vs new in one process (issue 24).

    python -m bench.decoder --model DIR --isa avx2 --threads 2 --frames 60 --rounds 5 --baseline b51fc54
    python -m bench.decoder --model DIR --isa avx2 --profile new   # torch.profiler table by op and shape
    python -m bench.decoder --model DIR --isa avx2 --threads 1 --clock cpu   # steadier on a busy machine

Variants, run interleaved (round-robin, the order rotating every round) so that a busy machine slows all
alike: ``new`` (this tree), ``plain`` (this tree with the oneDNN packed weights off, codec/onednn.py) and,
with ``--baseline REV``, ``base`` (the codec package of git revision REV, same weights). Each round streams
the same codes through a fresh state like the scheduler does (a 1-frame first chunk, then 4-frame chunks)
and takes the median ms per frame of the 4-frame chunks. Prints the medians over rounds, each variant's
ratio to the first one per round (median), and the largest sample difference between the variants.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa, isa_report  # noqa: E402
from wyoming_qwen3tts.platform_env import apply_cpu_env  # noqa: E402  (before torch, as the server does)

apply_cpu_env()

REPO = Path(__file__).resolve().parents[1]
CODEC = "wyoming_qwen3tts/engine/codec"


def baseline_package(rev: str, into: Path) -> Any:
    """Imports the codec package of git revision `rev` as `_codec_<rev>` (its `..layers` import from ours)."""
    name = "_codec_" + "".join(c if c.isalnum() else "_" for c in rev)
    pkg = into / name
    pkg.mkdir()
    files = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:{CODEC}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for fname in files:
        if fname.endswith(".py"):
            text = subprocess.run(
                ["git", "show", f"{rev}:{CODEC}/{fname}"],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            (pkg / fname).write_text(text.replace("from ..", "from wyoming_qwen3tts.engine."))
    spec = importlib.util.spec_from_file_location(
        name, pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.decoder")


def load_decoder(model: str, cls: Any) -> Any:
    import torch

    from wyoming_qwen3tts.engine.checkpoint import load_into, load_state_dict, read_json

    codec_dir = Path(model) / "speech_tokenizer"
    decoder = cls.from_config(read_json(codec_dir / "config.json")["decoder_config"])
    state = load_state_dict(codec_dir)
    load_into(
        decoder,
        state,
        "decoder.",
        codec_dir / "model.safetensors",
        dtype=torch.float32,
        device=torch.device("cpu"),
    )
    return decoder.eval()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def stream(decoder: Any, codes: Any, chunk: int, times: list[float] | None = None) -> Any:
    import torch

    state = decoder.new_state(1)
    outs, start = [], 0
    while start < codes.shape[-1]:
        n = 1 if start == 0 else chunk
        t0 = clock()
        outs.append(decoder.step(codes[..., start : start + n], state))
        if times is not None and n == chunk and start + n <= codes.shape[-1]:
            times.append(1000 * (clock() - t0) / n)
        start += n
    return torch.cat(outs, dim=-1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory (its speech_tokenizer/ is used)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=60, help="frames per round (after the 1-frame first chunk)")
    p.add_argument("--chunk", type=int, default=4, help="frames per streaming step (the server: 4)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--baseline", default="", help="git revision whose codec package is the 'base' variant")
    p.add_argument("--profile", default="", help="print a torch.profiler table of this variant and exit")
    p.add_argument("--split", action="store_true", help="print the time per decoder stage (new) and exit")
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: this process's CPU time (with --threads 1: not the time other processes hold the core)",
    )
    add_isa_argument(p)
    args = p.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    apply_isa(args.isa)
    import torch

    from wyoming_qwen3tts.engine.codec import onednn
    from wyoming_qwen3tts.engine.codec.decoder import SpeechDecoder

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock; {isa_report(args.isa)}",
        flush=True,
    )
    new = load_decoder(args.model, SpeechDecoder)
    variants: dict[str, tuple[Any, bool]] = {"new": (new, True), "plain": (new, False)}
    tmp = tempfile.TemporaryDirectory()
    if args.baseline:
        base_cls = baseline_package(args.baseline, Path(tmp.name)).SpeechDecoder
        base = base_cls.from_config(dict(new.cfg.extra, **_config_dict(new.cfg)))
        base.load_state_dict(new.state_dict())
        variants["base"] = (base.eval(), True)
    codes = torch.randint(0, 2048, (1, 16, 1 + args.frames), generator=torch.Generator().manual_seed(0))

    if args.profile:
        decoder, packed = variants[args.profile]
        onednn.ENABLED = packed
        stream(decoder, codes, args.chunk)  # warm-up (oneDNN primitives, packing)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            stream(decoder, codes, args.chunk)
        table = prof.key_averages(group_by_input_shape=True)
        print(
            table.table(
                sort_by="self_cpu_time_total",
                row_limit=40,
                max_name_column_width=28,
                max_shapes_column_width=64,
            )
        )
        return 0

    if args.split:
        split(new, codes, args.chunk)
        return 0

    outputs = {}
    for name, (decoder, packed) in variants.items():  # warm-up; reference outputs
        onednn.ENABLED = packed
        outputs[name] = stream(decoder, codes, args.chunk)
    first = next(iter(outputs.values()))
    for name, out in outputs.items():
        print(f"{name}: max |difference| to new {float((out - first).abs().max()):.2e}", flush=True)
    names = list(variants)
    medians: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            decoder, packed = variants[name]
            onednn.ENABLED = packed
            times: list[float] = []
            stream(decoder, codes, args.chunk, times)
            medians[name].append(statistics.median(times))
        print(
            f"round {r + 1}: " + ", ".join(f"{n} {medians[n][-1]:.1f}" for n in names) + " ms/frame",
            flush=True,
        )
    onednn.ENABLED = True
    ref = names[-1]
    print(
        f"\n| variant | decoder ms/frame (median of {args.rounds} rounds) | min "
        f"| ratio to {ref} (median per round) |"
    )
    print("|---|---|---|---|")
    for n in names:
        ratios = [a / b for a, b in zip(medians[n], medians[ref])]
        print(
            f"| {n} | {statistics.median(medians[n]):.1f} | {min(medians[n]):.1f} "
            f"| {statistics.median(ratios):.2f} |"
        )
    return 0


def split(decoder: Any, codes: Any, chunk: int, rounds: int = 3) -> None:
    """Time per decoder stage (forward hooks on the stage modules, the chosen clock), streamed like the
    server streams."""
    groups: dict[str, list[Any]] = {
        "pre_conv": [decoder.pre_conv],
        "transformer (8 layers)": [decoder.pre_transformer],
        "upsample x2 (transposed conv + ConvNeXt)": list(decoder.upsample),
        "decoder.0 (conv 1024 -> 1536, k7)": [decoder.decoder[0]],
    }
    for i, block in enumerate(decoder.decoder[1:-2]):
        groups[f"block {i + 1}: SnakeBeta + transposed conv"] = [block.block[0], block.block[1]]
        groups[f"block {i + 1}: 3 residual units"] = list(block.block[2:])
    groups["final SnakeBeta + conv 96 -> 1"] = [decoder.decoder[-2], decoder.decoder[-1]]
    spent = dict.fromkeys(groups, 0.0)
    started: dict[int, float] = {}
    hooks = []
    for name, modules in groups.items():
        for m in modules:
            hooks.append(m.register_forward_pre_hook(lambda mod, _in: started.__setitem__(id(mod), clock())))
            hooks.append(
                m.register_forward_hook(
                    lambda mod, _in, _out, name=name: spent.__setitem__(
                        name, spent[name] + clock() - started[id(mod)]
                    )
                )
            )
    stream(decoder, codes, chunk)  # warm-up
    spent = dict.fromkeys(groups, 0.0)
    t0 = clock()
    for _ in range(rounds):
        stream(decoder, codes, chunk)
    total = clock() - t0
    for h in hooks:
        h.remove()
    frames = rounds * codes.shape[-1]
    print(
        f"\n{1000 * total / frames:.1f} ms per frame in all ({rounds} streams of {codes.shape[-1]} frames)\n"
    )
    print("| stage | ms/frame | share |\n|---|---|---|")
    for name, seconds in spent.items():
        print(f"| {name} | {1000 * seconds / frames:.1f} | {100 * seconds / total:.0f} % |")


def _config_dict(cfg: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "extra"}


if __name__ == "__main__":
    sys.exit(main())
