"""Errors the server answers with a Wyoming `error` event; codes are core.vocab.ErrorCode (documented in
README), their HTTP statuses in core/errors.py."""

from __future__ import annotations

from ..core.errors import CodedError
from ..core.vocab import ErrorCode

__all__ = ["ErrorCode", "ServiceError"]


class ServiceError(CodedError):
    """A request-level failure: the client gets `error(code, message)`, the connection stays usable."""
