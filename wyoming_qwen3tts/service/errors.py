"""Errors the server answers with a Wyoming `error` event; `code` values are stable (documented in README).

Codes: voice-not-found, empty-text, text-too-long, server-busy, synthesis-failed, bad-request,
server-stopping, model-not-loaded, model-loading (the start-up load did not finish in time), voice-unusable,
timeout (Wyoming: an open stream idle too long).
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request-level failure: the client gets `error(code, text)`, the connection stays usable."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
