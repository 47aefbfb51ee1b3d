"""The language-independent part of text normalization: find numbers, decimals, ordinals, temperatures,
percentages, units, times, dates and currency amounts, and have a :class:`Lexicon` say them.

Only the numeric expressions (and the symbol or unit right after them) are replaced, in place: every
other character of the text is kept, so no word is ever dropped or moved. One combined regular expression
per language is scanned left to right; the earliest, then the most specific, alternative wins (dates and
times before amounts, amounts with a unit before bare numbers).

Separators: a language with a decimal comma (German, French, ...) reads ``1.000`` as a thousand and
``21,5`` / ``21.5`` as decimals; English reads ``1,000`` as a thousand and ``21.5`` as a decimal. With
both separators present the last one is the decimal mark (``1.234,5`` / ``1,234.5``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

MAX_DIGITS = 15  # longer numbers (ids, phone numbers) are read digit by digit


@dataclass
class Lexicon:
    """How one language says numbers and what goes with them."""

    cardinal: Callable[[int], str]
    ordinal: Callable[[int], str]
    year: Callable[[int], str]
    point: str  # the decimal mark, spoken
    minus: str
    decimal_comma: bool
    units: dict[str, tuple[str, str]]  # symbol -> (singular, plural)
    currencies: dict[str, tuple[str, str, str, str]]  # symbol -> (unit sg, unit pl, cent sg, cent pl)
    months: list[str]
    time: Callable[[int, int], str]  # hours 0-23, minutes 0-59
    date: Callable[[int, int, int], str]  # year, month, day (month 1-12, day 1-31)
    ordinal_suffix: str = ""  # regex of ordinal suffixes after digits ("st|nd|rd|th"), "" = none
    space: str = " "  # between spoken parts ("" for Chinese and Japanese)
    and_word: str = ""  # between an amount and its cents ("" = just a space)
    month_first_slash: bool = False  # 12/03/2026 is month/day/year (English) instead of day/month/year
    decimal: Optional[Callable[[int, str], str]] = None  # own reading of int part + fraction digits
    dot_date_ordinal: Optional[Callable[[int], str]] = None  # "3. Mai" (German): the day as ordinal
    percent_prefix: str = ""  # Chinese says the percent first: 百分之二十
    time_word: str = ""  # a word after a time that the spoken time already contains ("14:30 Uhr")


def _alternation(symbols: list[str]) -> str:
    return "|".join(re.escape(s) for s in sorted(symbols, key=len, reverse=True))


_NUM = r"\d+(?:[.,]\d+)*"


class Normalizer:
    """Compiled rules of one language; ``__call__(text) -> text``."""

    def __init__(self, lex: Lexicon) -> None:
        self.lex = lex
        suffix_symbols = list(lex.units) + [c for c in lex.currencies if c.isalpha() or len(c) > 1]
        prefix_currency = [c for c in lex.currencies if len(c) == 1 and not c.isalpha()]
        suffix_symbols += prefix_currency  # "5 €" as well as "€5"
        months = _alternation(lex.months) if lex.months else "(?!)"
        time_word = re.escape(lex.time_word) if lex.time_word else "(?!)"
        ordinal = rf"(?P<ord>\d{{1,9}})(?:{lex.ordinal_suffix})(?![^\W\d_])" if lex.ordinal_suffix else "(?!)"
        self.pattern = re.compile(
            rf"(?P<iso>(?<!\d)\d{{4}}-\d{{2}}-\d{{2}}(?!\d))"
            rf"|(?P<dotdate>(?<![\d.])\d{{1,2}}\.\d{{1,2}}\.\d{{4}}(?!\d))"
            rf"|(?P<slash>(?<![\d/])\d{{1,2}}/\d{{1,2}}/\d{{4}}(?!\d))"
            rf"|(?P<dotday>(?<![\d.])\d{{1,2}}\.(?=\s(?:{months})))"
            rf"|(?P<time>(?<![\d:])\d{{1,2}}:\d{{2}}(?![\d:]))(?P<tw>\s+{time_word}(?![^\W\d_]))?"
            rf"|(?P<pre>{_alternation(prefix_currency) if prefix_currency else '(?!)'})\s?(?P<pn>{_NUM})"
            rf"|(?P<sign>(?<![\w.,-])-)?(?P<un>{_NUM})\s?(?P<unit>{_alternation(suffix_symbols)})(?![^\W\d_])"
            rf"|{ordinal}"
            rf"|(?P<neg>(?<![\w.,-])-)?(?P<num>{_NUM})"
        )

    def __call__(self, text: str) -> str:
        return self.pattern.sub(self._replace, text)

    # -- pieces -------------------------------------------------------------------------------------------
    def _replace(self, m: re.Match) -> str:
        lex = self.lex
        kind = m.lastgroup
        if m.group("iso"):
            y, mo, d = (int(x) for x in m.group("iso").split("-"))
            return self._date(y, mo, d) or self._digits(m.group(0))
        if m.group("dotdate"):
            d, mo, y = (int(x) for x in m.group("dotdate").split("."))
            return self._date(y, mo, d) or self._digits(m.group(0))
        if m.group("slash"):
            a, b, y = (int(x) for x in m.group("slash").split("/"))
            mo, d = (a, b) if lex.month_first_slash else (b, a)
            return self._date(y, mo, d) or self._digits(m.group(0))
        if m.group("dotday"):
            day = int(m.group("dotday")[:-1])
            if lex.dot_date_ordinal is not None and 1 <= day <= 31:
                return lex.dot_date_ordinal(day)
            return self._number(m.group("dotday")[:-1]) + "."
        if m.group("time"):
            h, mi = (int(x) for x in m.group("time").split(":"))
            if h <= 24 and mi <= 59:
                return lex.time(h % 24, mi)
            return self._digits(m.group(0))
        if m.group("pre"):
            return self._money(m.group("pn"), m.group("pre"), negative=False)
        if m.group("unit"):
            if m.group("unit") == "s" and m.group(0)[-2].isdigit():  # "1990s" is no duration
                raw = m.group("un")
                return (lex.year(int(raw)) if len(raw) == 4 and raw.isdigit() else self._number(raw)) + "s"
            return self._with_unit(m.group("un"), m.group("unit"), bool(m.group("sign")))
        if kind == "ord" or (lex.ordinal_suffix and m.group("ord")):
            return lex.ordinal(int(m.group("ord")))
        raw = m.group("num")
        sign = lex.minus + lex.space if m.group("neg") else ""
        if len(raw) == 4 and raw.isdigit() and 1100 <= int(raw) <= 2099 and not sign:
            return lex.year(int(raw))  # "in 2026": a year more often than not (same words in most languages)
        return sign + self._number(raw)

    def _with_unit(self, raw: str, unit: str, negative: bool) -> str:
        lex = self.lex
        if unit in lex.currencies:
            return self._money(raw, unit, negative)
        whole, frac = self.parse(raw)
        singular, plural = lex.units[unit]
        word = singular if whole == 1 and not frac else plural
        sign = lex.minus + lex.space if negative else ""
        if unit == "%" and lex.percent_prefix:
            return f"{sign}{lex.percent_prefix}{self._spell(whole, frac)}"
        return f"{sign}{self._spell(whole, frac)}{lex.space}{word}"

    def _money(self, raw: str, symbol: str, negative: bool) -> str:
        lex = self.lex
        unit_sg, unit_pl, cent_sg, cent_pl = lex.currencies[symbol]
        whole, frac = self.parse(raw)
        sign = lex.minus + lex.space if negative else ""
        if frac and len(frac) == 2 and cent_sg:
            cents = int(frac)
            out = f"{sign}{lex.cardinal(whole)}{lex.space}{unit_sg if whole == 1 else unit_pl}"
            if cents:
                joiner = f"{lex.space}{lex.and_word}{lex.space}" if lex.and_word else lex.space
                out += f"{joiner}{lex.cardinal(cents)}{lex.space}{cent_sg if cents == 1 else cent_pl}"
            return out
        word = unit_sg if whole == 1 and not frac else unit_pl
        return f"{sign}{self._spell(whole, frac)}{lex.space}{word}"

    def _date(self, y: int, mo: int, d: int) -> Optional[str]:
        if not (1 <= mo <= 12 and 1 <= d <= 31 and y > 0):
            return None
        return self.lex.date(y, mo, d)

    def _digits(self, text: str) -> str:
        """An expression that is not what it looked like (25:99, 2026-13-45): each number on its own."""
        return re.sub(r"\d+", lambda m: self._number(m.group(0)), text)

    def _number(self, raw: str) -> str:
        whole, frac = self.parse(raw)
        return self._spell(whole, frac)

    # -- numbers ------------------------------------------------------------------------------------------
    def parse(self, raw: str) -> tuple[int, str]:
        """'1.234,5' -> (1234, '5') by the language's separators (see the module doc)."""
        group, mark = (".", ",") if self.lex.decimal_comma else (",", ".")
        if "." in raw and "," in raw:
            mark = raw[max(raw.rfind("."), raw.rfind(","))]
            whole, _, frac = raw.rpartition(mark)
            return _int(re.sub(r"[.,]", "", whole)), frac
        sep = "." if "." in raw else ("," if "," in raw else "")
        if not sep:
            return _int(raw), ""
        parts = raw.split(sep)
        grouped = all(len(p) == 3 for p in parts[1:]) and 1 <= len(parts[0]) <= 3
        if len(parts) > 2 or (sep == group and grouped):
            if grouped or len(parts) > 2:
                return _int("".join(parts)), ""
        whole, _, frac = raw.partition(sep)
        return _int(whole), frac

    def _spell(self, whole: int, frac: str) -> str:
        lex = self.lex
        if whole < 0:  # not from the regex; parse() only sees digits
            return lex.minus + lex.space + self._spell(-whole, frac)
        text = self._cardinal(whole)
        if not frac:
            return text
        if lex.decimal is not None and len(frac) <= 3 and len(str(whole)) <= MAX_DIGITS:
            return lex.decimal(whole, frac)
        digits = lex.space.join(lex.cardinal(int(ch)) for ch in frac)
        return f"{text}{lex.space}{lex.point}{lex.space}{digits}"

    def _cardinal(self, n: int) -> str:
        if len(str(n)) > MAX_DIGITS:
            return self.lex.space.join(self.lex.cardinal(int(ch)) for ch in str(n))
        return self.lex.cardinal(n)


def _int(digits: str) -> int:
    return int(digits) if digits else 0
