"""How fast `describe` is answered while the server synthesizes for another client (Home Assistant probes
with a 1 s timeout every 30 s).

    python -m bench.describe_latency MODEL_DIR [DTYPE] [--isa avx2]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from wyoming.client import AsyncTcpClient
from wyoming.info import Describe
from wyoming.tts import Synthesize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa, isa_report  # noqa: E402
from tests.fixtures.server_process import start_server  # noqa: E402

TEXT = "Hello there, this is a long sentence to keep the server busy for a while."


async def measure(port: int, probes: int = 8) -> list[float]:
    async with AsyncTcpClient("127.0.0.1", port) as busy:
        await busy.write_event(Synthesize(text=TEXT).event())
        await busy.read_event()  # audio-start: synthesis is running
        latencies = []
        for _ in range(probes):
            async with AsyncTcpClient("127.0.0.1", port) as client:
                started = time.monotonic()
                await client.write_event(Describe().event())
                await client.read_event()
                latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.5)
        return latencies


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("dtype", nargs="?", default="auto")
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)  # the server process inherits the limits
    print(isa_report(args.isa), file=sys.stderr)
    model, dtype = args.model, args.dtype
    with open("/tmp/describe_latency_server.log", "w") as log:
        proc, port = start_server(model, ["--dtype", dtype, "--threads", "2"], log, timeout=600)
        try:
            latencies = asyncio.run(measure(port))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print("describe latency during synthesis (ms):", [round(1000 * x, 1) for x in latencies])
    return 0


if __name__ == "__main__":
    sys.exit(main())
