"""What leaves the server in an answer names no server path: error texts are passed through
:func:`redact_paths` at both front doors (HTTP error bodies, Wyoming ``error`` events), and model names are
shown as their folder name (:func:`model_label`). Paths tell a client how the host is laid out (user
names, mount points) and are no use to it; the log keeps them."""

from __future__ import annotations

import re
from typing import Optional

# An absolute POSIX path of two or more components, not glued to a word, URL or relative path before it
# ("multipart/form-data" and "https://host/a/b" stay).
_ABSOLUTE = re.compile(r"(?<![\w:/.~\\-])(?:/[^\s/'\"\\:,;()\[\]{}<>]+){2,}/?")
_WINDOWS = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\s\\'\"]+\\)*([^\s\\'\"]*)")


def _last(match: re.Match) -> str:
    parts = [p for p in match.group().split("/") if p]
    return parts[-1] if parts else ""


def redact_paths(text: str) -> str:
    """``text`` with every absolute path replaced by its last component (``/data/models/x`` -> ``x``)."""
    if "/" not in text and "\\" not in text:
        return text
    return _WINDOWS.sub(lambda m: m.group(1), _ABSOLUTE.sub(_last, text))


def model_label(model: Optional[str]) -> Optional[str]:
    """A configured model as clients see it: its folder (or hub repository) name, never a server path."""
    if not model:
        return None
    return str(model).rstrip("/\\").replace("\\", "/").split("/")[-1]
