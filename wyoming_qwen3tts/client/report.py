"""Human and machine output: the describe listing, the timing block (stderr) and the JSON summary."""

from __future__ import annotations

import logging
from typing import Any, Optional

from wyoming.info import Info, TtsProgram

from .output import AudioPipeline
from .session import SayResult

_LOGGER = logging.getLogger(__name__)

_OTHER_SERVICES = ("asr", "handle", "intent", "wake", "mic", "snd")


def _first_seen(items: list[list[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for group in items:
        for item in group:
            seen.setdefault(item, None)
    return list(seen)


def _program_lines(program: TtsProgram, default: bool) -> list[str]:
    """``default``: mark it as the program clients use (the first installed one), when there are several."""
    title = f"TTS program {program.name}"
    if program.version:
        title += f" {program.version}"
    if not program.installed:
        title += "  (not installed)"
    elif default:
        title += "  (the one clients use)"
    lines = [title]
    if program.description:
        lines.append(f"  description  {program.description}")
    if program.attribution and (program.attribution.name or program.attribution.url):
        by, url = program.attribution.name or "", program.attribution.url
        lines.append(f"  attribution  {by} <{url}>" if url else f"  attribution  {by}")
    streams = program.supports_synthesize_streaming
    lines.append(
        "  streaming    "
        + ("yes (synthesize-start/-chunk/-stop)" if streams else "no (one synthesize per request)")
    )
    voices = list(program.voices)
    language_lists = [list(v.languages or []) for v in voices]
    languages = _first_seen(language_lists)
    lines.append(f"  languages    ({len(languages)}) {', '.join(languages) if languages else '-'}")
    same_languages = all(langs == language_lists[0] for langs in language_lists) if voices else True
    lines.append(f"  voices       ({len(voices)})" + ("" if voices else " none"))
    width = max((len(v.name) for v in voices), default=0)
    for voice in voices:
        extra = []
        if not voice.installed:
            extra.append("not installed")
        if not same_languages:
            extra.append(", ".join(voice.languages or []) or "no language")
        if voice.speakers:
            extra.append("speakers: " + ", ".join(s.name for s in voice.speakers))
        line = f"    {voice.name:<{width}}  {voice.description or ''}".rstrip()
        lines.append(line + (f"  [{'; '.join(extra)}]" if extra else ""))
    return lines


def format_info(info: Info, uri: str) -> str:
    lines = [f"Wyoming server at {uri}"]
    if not info.tts:
        lines.append("  no TTS program: this server does not do text to speech")
    default = next((p for p in info.tts if p.installed), None)
    for program in info.tts:
        lines.extend(_program_lines(program, program is default and len(info.tts) > 1))
    others = [
        f"{kind}: {', '.join(p.name for p in getattr(info, kind))}"
        for kind in _OTHER_SERVICES
        if getattr(info, kind, None)
    ]
    if info.satellite is not None:
        others.append(f"satellite: {info.satellite.name}")
    if others:
        lines.append("Also offers " + "; ".join(others))
    return "\n".join(lines)


def summary(
    result: SayResult, pipeline: AudioPipeline, output: Optional[str], player: Optional[str]
) -> dict[str, Any]:
    """The ``--json`` object (also the source of the timing block)."""
    fmt = pipeline.format
    audio_s = pipeline.seconds
    total = result.total_s
    voice = result.voice

    def r(value: Optional[float]) -> Optional[float]:
        return None if value is None else round(value, 4)

    return {
        "uri": result.uri,
        "mode": result.mode,
        "voice": voice.name if voice else None,
        "speaker": voice.speaker if voice else None,
        "language": voice.language if voice else None,
        "connect_s": r(result.connect_s),
        "ttfa_s": r(result.ttfa_s),
        "total_s": r(total),
        "input_end_s": r(result.input_end_s),
        "audio_s": r(audio_s),
        "rtf": r(total / audio_s) if total and audio_s else None,
        "x_real_time": r(audio_s / total) if total and audio_s else None,
        "cycles": result.cycles,
        "chunks": result.chunks,
        "samples": pipeline.samples,
        "bytes": pipeline.bytes,
        "rate": fmt.rate if fmt else None,
        "width": fmt.width if fmt else None,
        "channels": fmt.channels if fmt else None,
        "converted": pipeline.converted,
        "fragments": result.fragments,
        "text_chars": result.text_chars,
        "output": output,
        "player": player,
        "error": (
            {"code": result.error_code, "text": result.error_text}
            if result.error_code is not None or result.error_text is not None
            else None
        ),
    }


def timing_block(data: dict[str, Any], audio_format: str) -> str:
    def sec(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.3f} s"

    mode = data["mode"]
    if data["fragments"]:
        plural = "" if data["fragments"] == 1 else "s"
        mode += f" ({data['fragments']} fragment{plural}, {data['text_chars']} characters)"
    else:
        mode += f" ({data['text_chars']} characters)"
    voice = data["voice"] or "(server default)"
    if data["speaker"]:
        voice += f", speaker {data['speaker']}"
    total = sec(data["total_s"])
    if data["input_end_s"] and data["fragments"]:
        total += f"  (text sent by {data['input_end_s']:.3f} s)"
    speed = "-"
    if data["x_real_time"]:
        speed = f"{data['x_real_time']:.2f}x real time (RTF {data['rtf']:.3f})"
    cycles = "1 audio cycle" if data["cycles"] == 1 else f"{data['cycles']} audio cycles"
    rows = [
        ("mode", mode),
        ("voice", voice),
        ("connect", sec(data["connect_s"])),
        ("first audio", sec(data["ttfa_s"])),
        ("total", total),
        ("audio", f"{sec(data['audio_s'])}  {audio_format}".rstrip()),
        ("speed", speed),
        ("received", f"{cycles}, {data['chunks']} chunks, {data['samples']} samples"),
    ]
    if data["output"]:
        rows.append(("output", data["output"]))
    if data["player"]:
        rows.append(("player", data["player"]))
    return "\n".join(f"{name:<12} {value}" for name, value in rows)
