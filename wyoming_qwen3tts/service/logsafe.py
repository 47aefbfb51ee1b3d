"""Log lines carry client-controlled values (paths, names, voice names, header values): a value with a
newline or another control character could forge a log line or hide one. :func:`install` puts a filter on
the root handlers that escapes every control character of every formatted message (``\\n`` -> ``\\x0a``), the
log's own multi-line parts (tracebacks) excepted; :func:`safe` escapes and shortens one value where a
message is built without logging's arguments."""

from __future__ import annotations

import logging
import re
from typing import Any

_LOGGER = logging.getLogger(__name__)

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides (they reorder text).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    return _CONTROL.sub(_escape, text)


def safe(value: Any, limit: int = 200) -> str:
    """``value`` as one printable line of at most ``limit`` characters."""
    text = escape(str(value))
    return text if len(text) <= limit else text[:limit] + "..."


class EscapeControlCharacters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's to report
            return True
        escaped = escape(message)
        if escaped != message:
            record.msg, record.args = escaped, ()
        return True


def install() -> None:
    """Adds the filter to every handler of the root logger (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
            handler.addFilter(EscapeControlCharacters())
