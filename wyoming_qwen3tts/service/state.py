"""What both front doors share at run time: the model pool, the voice catalog, the prompt cache, the limits,
and admission (requests in flight, Wyoming and HTTP together, against ``max_concurrent``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from ..core.vocab import ErrorCode
from ..voices.prompts import PromptCache
from .catalog import VoiceCatalog
from .delivery import Delivery
from .errors import ServiceError
from .infocache import CachedInfo
from .models import ModelPool
from .voice import Voice


@dataclass
class ServerState:
    """Shared by all connections; everything here is touched from the event loop only."""

    models: ModelPool
    catalog: VoiceCatalog
    info: Callable[[], Any]  # rebuilt per describe: new voices appear without restart
    default_language: str  # engine name or "auto"
    samples_per_chunk: int
    max_concurrent: int
    max_text_chars: int
    streaming: bool
    prompts: Optional[PromptCache] = None  # clone-voice prompts (memory + disk)
    delivery: Delivery = field(default_factory=Delivery)  # speed, pauses, normalization, seed (delivery.py)
    active_jobs: int = 0  # admitted requests, Wyoming and HTTP together (speech.admitted)
    warm: bool = False  # set once the start-up warm-up finished (the HTTP /readyz answer)
    loading: bool = False  # the start-up load runs: describe marks the voices (app.load_models)
    handlers: set = field(default_factory=set)  # open front-door connections (closed at shutdown)
    described: Optional[CachedInfo] = None  # the cached describe answer (infocache.py)

    def __post_init__(self) -> None:
        if self.described is None:
            library = getattr(self.catalog, "library", None)
            self.described = CachedInfo(self.info, getattr(library, "root", None))

    def voices(self) -> list[Voice]:
        return self.catalog.voices()

    def find_voice(self, name: Optional[str]) -> Voice:
        """Wyoming's voice lookup (catalog.find_or_default: a missing voice falls back to the default)."""
        return self.catalog.find_or_default(name)


def check_length(state: ServerState, text: str) -> None:
    """The text limit, and text that is valid Unicode (a lone surrogate from a JSON escape is a client
    error, not a synthesis failure)."""
    if len(text) > state.max_text_chars:
        raise ServiceError(
            ErrorCode.TEXT_TOO_LONG, f"text has {len(text)} characters; the limit is {state.max_text_chars}"
        )
    check_unicode(text)


def check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ServiceError(
            ErrorCode.BAD_REQUEST,
            f"the text holds an invalid character (a lone surrogate) at position {exc.start}",
        ) from None


@contextlib.contextmanager
def admitted(state: ServerState) -> Iterator[None]:
    """One admitted request for the duration of the block; server-busy when all slots are taken."""
    if state.active_jobs >= state.max_concurrent:
        raise ServiceError(
            ErrorCode.SERVER_BUSY, f"all {state.max_concurrent} synthesis slots are busy; try again"
        )
    state.active_jobs += 1
    try:
        yield
    finally:
        state.active_jobs -= 1
