"""Cutting a long sentence into shorter segments before synthesis (playback pacing, service/pacing.py):
where holding a whole sentence back would leave the listener in silence for too long, it is spoken as
clauses (cut after , ; : and dashes, and their CJK forms), and a clause still too long as phrases (cut
before a conjunction, else between words in even groups). The pieces keep their punctuation and are
spoken with the reply's one voice and seed, so they sound like the sentence with short breaths.
"""

from __future__ import annotations

import re

# After clause punctuation followed by a space (Latin scripts), or after CJK clause punctuation.
_CLAUSE = re.compile(r"(?<=[,;:])\s+|\s+(?=[–—]\s)|(?<=[，、；：])")
# Words that start a phrase (a cut goes before them); a small list of the model's languages.
_STARTERS = frozenset("""and or but because which that when while where if so then although
    und oder aber weil denn dass wenn als während ob sondern
    et ou mais parce quand si donc qui que lorsque
    y o pero porque cuando si que aunque mientras
    e ou mas porque quando se que embora enquanto
    e o ma perché quando se che mentre anche
    и или но потому что когда если который""".split())


def split_long(text: str, max_chars: int, min_chars: int = 12) -> list[str]:
    """``text`` in pieces of at most ``max_chars`` where the text allows it (never below ``min_chars``
    a piece, never inside a word). Short texts come back whole."""
    text = text.strip()
    if len(text) <= max_chars or max_chars <= 0:
        return [text] if text else []
    pieces: list[str] = []
    for clause in _pieces(_CLAUSE, text):
        pieces.extend(_phrases(clause, max_chars, min_chars) if len(clause) > max_chars else [clause])
    return _merge(pieces, max_chars, min_chars)


def _pieces(pattern: re.Pattern[str], text: str) -> list[str]:
    return [p.strip() for p in pattern.split(text) if p and p.strip()]


def _phrases(clause: str, max_chars: int, min_chars: int) -> list[str]:
    words = clause.split()
    if len(words) < 2:
        return [clause]
    groups: list[list[str]] = [[]]
    for word in words:
        if groups[-1] and word.lower().strip("\"'(") in _STARTERS:
            groups.append([])
        groups[-1].append(word)
    out: list[str] = []
    for group in groups:
        phrase = " ".join(group)
        if len(phrase) <= max_chars or len(group) < 2:
            out.append(phrase)
            continue
        out.extend(_packed(group, max_chars))
    return _merge(out, max_chars, min_chars)


def _packed(words: list[str], max_chars: int) -> list[str]:
    """Words in as few runs of at most ``max_chars`` as they fit in (a longer word stands alone), with the
    characters spread evenly over the runs so that the last one is not a stub."""
    greedy = _runs(words, max_chars, float(max_chars))
    even = _runs(words, max_chars, len(" ".join(words)) / len(greedy))
    return even if len(even) == len(greedy) else greedy


def _runs(words: list[str], max_chars: int, share: float) -> list[str]:
    """Words packed left to right into runs of at most ``max_chars``, a run closed once it reaches about
    ``share`` characters."""
    out, run = [], ""
    for word in words:
        joined = f"{run} {word}" if run else word
        if run and (len(joined) > max_chars or len(joined) > share + len(word) / 2):
            out.append(run)
            run = word
        else:
            run = joined
    return out + [run]


def _merge(pieces: list[str], max_chars: int, min_chars: int) -> list[str]:
    """Joins neighbours while they fit, and a too short piece with its neighbour in any case."""
    out: list[str] = []
    for piece in pieces:
        sep = "" if out and _cjk_end(out[-1]) else " "
        if out and (len(out[-1]) + len(piece) + 1 <= max_chars or len(out[-1]) < min_chars):
            out[-1] = out[-1] + sep + piece
        else:
            out.append(piece)
    if len(out) > 1 and len(out[-1]) < min_chars:
        last = out.pop()
        out[-1] = out[-1] + ("" if _cjk_end(out[-1]) else " ") + last
    return out


def join_pieces(pieces: list[str]) -> str:
    """The text that :func:`split_long` cut into ``pieces`` (to cut it again)."""
    out = ""
    for piece in pieces:
        out = piece if not out else out + ("" if _cjk_end(out) else " ") + piece
    return out


def _cjk_end(text: str) -> bool:
    return bool(text) and text[-1] in "，、；：。"
