"""A cheap script-based language guess (the language table itself is core/languages.py).

Home Assistant never sends a language, so when neither the voice nor the configuration fixes one the server
guesses from the text. The guess is deliberately conservative (``None`` means "let the model decide"):

* Script first. Letters are counted per script, CJK characters (Han, kana, Hangul) weighing 3 (one CJK
  character carries about as much as three Latin letters), so a Chinese sentence with an English brand name
  is still Chinese and an English sentence quoting one Chinese character is not. The heaviest script wins:
  any kana -> ``japanese`` (kana only occur in Japanese; its Han characters count for Japanese then),
  Han without kana -> ``chinese``, Hangul -> ``korean``, Cyrillic -> ``russian`` (the closest language the
  model has for Ukrainian, Bulgarian, ... too).
* Latin script is ambiguous (English, German, French, Spanish, Portuguese, Italian) -> ``None``, except for
  a confident hint: each candidate scores 2 per distinctive mark (``ä ö ü ß`` German; ``è ë î ï û œ``
  French; ``ñ ¿ ¡`` Spanish; ``ã õ`` Portuguese; ``ì ò`` Italian; letters only count inside words of 2+
  letters) plus 1 per frequent function word that no other candidate shares (``und``, ``ist`` / ``les``,
  ``est`` / ``los``, ``muy`` / ``não``, ``você`` / ``è``, ``della`` ...). English competes with its own
  function words but is never returned. The best language is returned only when it scores at least 3, at
  least twice the runner-up, has at least one function word, and has a distinctive mark or at least 3
  function words; otherwise ``None`` (so "I love Zürich" stays ``None``).
"""

from __future__ import annotations

import logging
import re
from typing import Optional

from ..core.scripts import CYRILLIC_RE, HAN_RE, HANGUL_RE, KANA_RE, LATIN_RE

_LOGGER = logging.getLogger(__name__)


_CJK_WEIGHT = 3

# Latin hints: (distinctive letters, function words that no other candidate shares). Letters are only
# counted inside words of 2+ letters, so Italian's one-letter word "è" does not count for French.
_HINTS: dict[str, tuple[str, frozenset[str]]] = {
    "german": (
        "äöüß",
        frozenset(
            "der die das und ist nicht ich ein eine einen zu mit auf für sich auch wird sind wir bitte "
            "heute nein gibt haben werden kann noch wie bei aus nach von oder aber schon mehr jetzt uhr "
            "dem den ihr ihre sie guten danke".split()
        ),
    ),
    "french": (
        "èëîïûœ",
        frozenset(
            "le les et est une des du pas je vous nous avec dans pour sur ce cette sont mais au aux "
            "été être fait très leur bonjour merci oui comment ça aujourd hui".split()
        ),
    ),
    "spanish": (
        "ñ¿¡",
        frozenset(
            "el los las y es están muy pero más hoy gracias sí también hay tiene usted eso cómo qué dónde "
            "cuando hola ahora puedo".split()
        ),
    ),
    "portuguese": (
        "ãõ",
        frozenset(
            "não você são uma com os muito também obrigado obrigada hoje isso isto eu ele ela mas pelo "
            "pela seu sua tem foi já é agora olá".split()
        ),
    ),
    "italian": (
        "ìò",
        frozenset(
            "di che è per sono gli della delle dello anche più perché molto questo questa ciao grazie "
            "oggi ho hai nel nella alla siamo ed domani buongiorno ecco allora adesso tutto luci".split()
        ),
    ),
    "english": (
        "",
        frozenset(
            "the and is are of to you it that this with for on was have be not what your will can i my "
            "me we they at from by".split()
        ),
    ),
}
_WORD = re.compile(r"[^\W\d_]+")


def detect_language(text: str) -> Optional[str]:
    """Engine language name guessed from the text's script, or ``None`` when unsure (see module doc)."""
    if not text:
        return None
    kana = len(KANA_RE.findall(text))
    han = len(HAN_RE.findall(text))
    scores = {
        "japanese": _CJK_WEIGHT * (kana + han) if kana else 0,
        "chinese": 0 if kana else _CJK_WEIGHT * han,
        "korean": _CJK_WEIGHT * len(HANGUL_RE.findall(text)),
        "russian": len(CYRILLIC_RE.findall(text)),
        None: len(LATIN_RE.findall(text)),
    }
    best = max(scores, key=lambda key: scores[key])
    if scores[best] == 0:
        return None
    if best is not None:
        return best
    return _latin_hint(text)


def _latin_hint(text: str) -> Optional[str]:
    lower = text.lower()
    words = _WORD.findall(lower)
    scores: dict[str, tuple[int, int, int]] = {}  # language -> (score, letters, function words)
    long_words = [word for word in words if len(word) > 1]
    for language, (letters, function_words) in _HINTS.items():
        letter_hits = sum(
            sum(word.count(ch) for word in long_words) if ch.isalpha() else lower.count(ch) for ch in letters
        )
        word_hits = sum(1 for word in words if word in function_words)
        scores[language] = (2 * letter_hits + word_hits, letter_hits, word_hits)
    ranked = sorted(scores, key=lambda key: scores[key][0], reverse=True)
    best, runner_up = ranked[0], ranked[1]
    score, letter_hits, word_hits = scores[best]
    if best == "english" or score < 3 or score < 2 * scores[runner_up][0]:
        return None
    if word_hits == 0 or (letter_hits == 0 and word_hits < 3):
        return None  # an umlaut in a name ("Zürich") is no evidence without the language's own words
    return best
