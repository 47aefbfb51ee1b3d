"""The describe answer, cached. Building it lists the whole voice library (a directory read per voice);
done per describe on the event loop, a client pipelining thousands of describes froze everyone's audio.
The cached answer is rebuilt in a worker thread when the library changed: its directory's modification
time moves whenever a voice is added, overwritten or removed (every write renames an entry in the root),
and a short time-to-live catches files edited in place (a transcript changed over Samba)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

TTL_SECONDS = 10.0


class CachedInfo:
    def __init__(self, build: Callable[[], Any], root: Optional[Path], ttl: float = TTL_SECONDS) -> None:
        self.build = build
        self.root = root
        self.ttl = ttl
        self._value: Any = None
        self._stamp: Any = None
        self._built = 0.0
        self._lock = asyncio.Lock()

    def _library_stamp(self) -> Any:
        if self.root is None:
            return None
        try:
            st = os.stat(self.root)
        except OSError:
            return "missing"
        return (st.st_mtime_ns, st.st_ino)

    async def get(self) -> Any:
        async with self._lock:  # concurrent describes share one rebuild
            stamp = self._library_stamp()
            fresh = time.monotonic() - self._built < self.ttl
            if self._value is None or stamp != self._stamp or not fresh:
                self._value = await asyncio.to_thread(self.build)
                self._stamp, self._built = stamp, time.monotonic()
            return self._value

    def invalidate(self) -> None:
        self._value = None
