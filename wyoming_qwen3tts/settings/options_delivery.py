"""Settings of how replies sound (service/delivery.py): rate, pauses, pacing, normalization, seed, unload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .checks import _check_bool
from .delivery import (
    _check_max_silence,
    _check_prebuffer,
    _check_seed,
    _check_silence,
    _check_slowdown,
    _check_speed,
    _check_unload_after,
)
from .spec import BOTH, SWITCH, Addon, setting


@dataclass
class DeliverySettings:
    speed: float = setting(  # speaking rate of voices without their own (pitch-preserving)
        1.0,
        check=_check_speed,
        metavar="X",
        help="speaking rate, 0.5-2.0, pitch kept (default: 1.0)",
        doc="speaking rate (0.5-2.0, pitch kept) of voices without their own (see "
        "[How replies sound](#how-replies-sound))",
        addon=Addon("float(0.5,2.0)"),
    )
    sentence_silence: float = setting(  # seconds of silence between the sentences of a reply
        0.0,
        check=_check_silence,
        metavar="SECONDS",
        help="pause between the sentences of a reply (default: 0)",
        doc="seconds of silence between the sentences of a reply",
        doc_default="0",
        addon=Addon("float(0,5)"),
    )
    prebuffer: Any = setting(  # "auto" | "off" | seconds held back per segment (service/pacing.py)
        "auto",
        check=_check_prebuffer,
        metavar="auto|off|SECONDS",
        help="on hosts slower than real time, hold each phrase back until it can play without a stall "
        "(default: auto; off: send audio as soon as it is made; SECONDS: a fixed amount)",
        doc="`auto`: on hosts slower than real time hold each phrase back until it plays without a stall; "
        "`off`; or seconds (see [How replies sound](#how-replies-sound))",
        doc_default="auto",
        addon=Addon(r"match(^(auto|off|[0-9]+(\.[0-9]+)?)$)"),
    )
    max_silence: float = setting(  # longest pause a held-back segment may cause (long sentences are cut)
        3.0,
        check=_check_max_silence,
        metavar="SECONDS",
        help="longest pause a held-back phrase may cause; longer sentences are cut at clauses (default: 3)",
        doc="longest pause a held-back phrase may cause (0.5-30 s); longer sentences are cut at clauses",
        doc_default="3",
        addon=Addon("float(0.5,30)"),
    )
    debug_slowdown: Optional[str] = setting(  # FACTOR or RATEx: slower generation (engine/slowdown.py)
        None,
        check=_check_slowdown,
        metavar="FACTOR|RATEx",
        help="testing only: generation FACTOR times slower, or at RATE x real time (e.g. 0.25x)",
        doc="testing only: generation `FACTOR` times slower, or at `RATEx` real time (`0.25x`)",
        doc_default="off",
        debug=True,
    )
    normalize: bool = setting(  # numbers, units, dates ... to words when the language is known
        True,
        check=_check_bool,
        flag=BOTH,
        help="numbers, units, times, dates and prices spelled out in the request's language (default: on; "
        "--no-normalize: passed to the model as written)",
        doc="pass numbers, units, times, dates and prices as written instead of spelling them out",
        addon=Addon("bool"),
    )
    seed: Optional[int] = setting(  # sampling seed of every request (reproducible audio); None = random
        None,
        check=_check_seed,
        metavar="N",
        help="sampling seed: the same text gives the same audio (default: random)",
        doc="sampling seed of every request: the same text and voice give the same audio bytes",
        doc_default="random",
        addon=Addon("int(0,2147483647)?"),
    )
    strict_voices: bool = setting(  # an unknown voice is an error instead of the default voice
        False,
        check=_check_bool,
        flag=SWITCH,
        help="an unknown voice is a voice-not-found error (default: the default voice, with a warning)",
        doc="an unknown voice is `voice-not-found` instead of the default voice with a WARNING",
        addon=Addon("bool"),
    )
    unload_after: Optional[float] = setting(  # seconds idle before the models are unloaded; None = never
        None,
        check=_check_unload_after,
        metavar="SECONDS",
        help="unload the models after this long idle; the next request reloads them (default: never)",
        doc="unload the models after this many idle seconds; the next request reloads them",
        doc_default="never",
        addon=Addon("int(0,86400)", default=0),  # 0 = never
    )
