"""wyoming-bench against the real server process (TTFT, RTF, streaming vs not).

    python -m bench.bench_server --model DIR [--dtype bfloat16] -- --rounds 3 --warmup 1 --texts "Hi there."

Starts `python -m wyoming_qwen3tts` on a free loopback port, waits for the health check, runs
`wyoming-bench tts 127.0.0.1:PORT <args after -->`, prints its report and stops the server with SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa, isa_report  # noqa: E402
from tests.fixtures.server_process import start_server  # noqa: E402


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log", default="/tmp/bench_server.log", help="server log file")
    add_isa_argument(p)
    args = p.parse_args(argv[:split])
    apply_isa(args.isa)  # the server process inherits the limits
    print(isa_report(args.isa), file=sys.stderr)
    with open(args.log, "w") as log:
        try:
            server, port = start_server(
                args.model, ["--dtype", args.dtype, "--threads", str(args.threads)], log, timeout=600
            )
        except RuntimeError as exc:
            print(f"{exc}; see {args.log}", file=sys.stderr)
            return 1
        try:
            return subprocess.run(
                ["wyoming-bench", "tts", f"127.0.0.1:{port}", *argv[split + 1 :]]
            ).returncode
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


if __name__ == "__main__":
    sys.exit(main())
