"""Text for ``say``: from the arguments or from stdin, whole or as streaming fragments.

``-`` with ``--stream`` reads stdin incrementally in a daemon thread (a blocking ``read`` never stalls the
event loop, and it works for pipes, files and terminals alike, unlike ``connect_read_pipe``). Each read is
sent as soon as it arrives, split into fragments of a few words that concatenate back to exactly the
input (whitespace included, so words never merge), like an LLM's token deltas.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import sys
import threading
from typing import AsyncIterator, BinaryIO, Optional

_WORD = re.compile(r"\S+\s*")
_READ_SIZE = 65536


def split_fragments(text: str, words: int) -> list[str]:
    """Pieces of at most ``words`` words each; ``"".join(result) == text`` always."""
    if not text:
        return []
    tokens = _WORD.findall(text)
    if not tokens:  # whitespace only: still sent, it separates the words around it
        return [text]
    lead = text[: len(text) - len(text.lstrip())]
    tokens[0] = lead + tokens[0]
    step = max(1, words)
    return ["".join(tokens[i : i + step]) for i in range(0, len(tokens), step)]


def read_all_stdin(stream: Optional[BinaryIO] = None) -> str:
    data = (stream or sys.stdin.buffer).read()
    return data.decode("utf-8", errors="replace")


class _StdinThread(threading.Thread):
    """Blocking reads of a file descriptor, handed to the event loop as they complete (None = EOF)."""

    def __init__(
        self, fd: int, loop: asyncio.AbstractEventLoop, out: "asyncio.Queue[Optional[bytes]]"
    ) -> None:
        super().__init__(name="client-stdin-reader", daemon=True)  # daemon: never holds up exit
        self.fd = fd
        self.loop = loop
        self.out = out

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except OSError:
                data = b""
            try:
                self.loop.call_soon_threadsafe(self.out.put_nowait, data or None)
            except RuntimeError:  # the loop is gone: the run is over
                return
            if not data:
                return


async def stdin_fragments(words: int, fd: Optional[int] = None) -> AsyncIterator[str]:
    """Fragments of stdin as it is written; ends at EOF."""
    queue: "asyncio.Queue[Optional[bytes]]" = asyncio.Queue()
    _StdinThread(sys.stdin.fileno() if fd is None else fd, asyncio.get_running_loop(), queue).start()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a read may end mid-character
    while True:
        data = await queue.get()
        text = decoder.decode(data or b"", final=data is None)
        for fragment in split_fragments(text, words):
            yield fragment
        if data is None:
            return


async def string_fragments(text: str, words: int) -> AsyncIterator[str]:
    for fragment in split_fragments(text, words):
        yield fragment


async def paced(fragments: AsyncIterator[str], delay: float) -> AsyncIterator[str]:
    """Sleeps ``delay`` seconds before every fragment but the first (simulates a model typing)."""
    first = True
    async for fragment in fragments:
        if not first and delay > 0:
            await asyncio.sleep(delay)
        first = False
        yield fragment
