"""Lexicons of Chinese, Japanese and Korean.

num2words has no Chinese, so Chinese numbers are our own (~30 lines: 万/亿 groups, 零 for gaps, 十 for
10-19, years digit by digit as Chinese reads them); Japanese and Korean (Sino-Korean) cardinals come from
num2words. Chinese and Japanese join the spoken parts without spaces, Korean with spaces.
"""

from __future__ import annotations

from typing import Callable

from num2words import num2words

from .rules import Lexicon

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_GROUPS = ["", "万", "亿", "万亿"]


def _zh_four(n: int) -> str:
    """1..9999 with inner zeros as 零 (一千零五)."""
    out, gap = "", False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit:
            out += ("零" if gap else "") + _ZH_DIGITS[digit] + unit
            gap = False
        elif out:
            gap = True
    return out


def zh_cardinal(n: int) -> str:
    if n == 0:
        return "零"
    if n < 0:
        return "负" + zh_cardinal(-n)
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_ZH_GROUPS):  # beyond 10^16: digit by digit
        return "".join(_ZH_DIGITS[int(ch)] for ch in str(sum(g * 10000**i for i, g in enumerate(groups))))
    out, gap = "", False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if not group:
            gap = bool(out)
            continue
        if out and (gap or group < 1000):
            out += "零"
        out += _zh_four(group) + _ZH_GROUPS[index]
        gap = False
    return out[1:] if out.startswith("一十") else out  # 十五, not 一十五


def _zh_year(n: int) -> str:
    return "".join(_ZH_DIGITS[int(ch)] for ch in str(n))


def _n2w(lang: str) -> Callable[[int], str]:
    def say(n: int) -> str:
        return str(num2words(n, lang=lang))

    return say


_UNITS = {
    "zh": {
        "°C": "摄氏度",
        "°F": "华氏度",
        "°": "度",
        "%": "",  # 百分之 goes before the number (Lexicon.percent_prefix)
        "km/h": "公里每小时",
        "km": "公里",
        "m": "米",
        "cm": "厘米",
        "mm": "毫米",
        "kg": "公斤",
        "g": "克",
        "l": "升",
        "kWh": "千瓦时",
        "kW": "千瓦",
        "W": "瓦",
        "h": "小时",
        "min": "分钟",
        "s": "秒",
    },
    "ja": {
        "°C": "度",
        "°F": "華氏度",
        "°": "度",
        "%": "パーセント",
        "km/h": "キロメートル毎時",
        "km": "キロメートル",
        "m": "メートル",
        "cm": "センチメートル",
        "mm": "ミリメートル",
        "kg": "キログラム",
        "g": "グラム",
        "l": "リットル",
        "kWh": "キロワット時",
        "kW": "キロワット",
        "W": "ワット",
        "h": "時間",
        "min": "分",
        "s": "秒",
    },
    "ko": {
        "°C": "도",
        "°F": "화씨 도",
        "°": "도",
        "%": "퍼센트",
        "km/h": "킬로미터 매시",
        "km": "킬로미터",
        "m": "미터",
        "cm": "센티미터",
        "mm": "밀리미터",
        "kg": "킬로그램",
        "g": "그램",
        "l": "리터",
        "kWh": "킬로와트시",
        "kW": "킬로와트",
        "W": "와트",
        "h": "시간",
        "min": "분",
        "s": "초",
    },
}
_CURRENCIES = {
    "zh": {"€": "欧元", "EUR": "欧元", "$": "美元", "USD": "美元", "£": "英镑", "¥": "元", "元": "元"},
    "ja": {"€": "ユーロ", "EUR": "ユーロ", "$": "ドル", "USD": "ドル", "£": "ポンド", "¥": "円", "円": "円"},
    "ko": {
        "€": "유로",
        "EUR": "유로",
        "$": "달러",
        "USD": "달러",
        "£": "파운드",
        "¥": "엔",
        "₩": "원",
        "원": "원",
    },
}
_POINT = {"zh": "点", "ja": "点", "ko": "점"}
_MINUS = {"zh": "负", "ja": "マイナス", "ko": "마이너스"}


def lexicon(lang: str) -> Lexicon:
    """The lexicon of zh, ja or ko."""
    say = zh_cardinal if lang == "zh" else _n2w(lang)
    space = " " if lang == "ko" else ""

    def time(h: int, m: int) -> str:
        if lang == "zh":
            return f"{say(h)}点" + (f"{'零' if m < 10 else ''}{say(m)}分" if m else "")
        if lang == "ja":
            return f"{say(h)}時" + (f"{say(m)}分" if m else "")
        return f"{say(h)}시" + (f" {say(m)}분" if m else "")

    def date(y: int, mo: int, d: int) -> str:
        if lang == "zh":
            return f"{_zh_year(y)}年{say(mo)}月{say(d)}日"
        if lang == "ja":
            return f"{say(y)}年{say(mo)}月{say(d)}日"
        return f"{say(y)}년 {say(mo)}월 {say(d)}일"

    units = {symbol: (word, word) for symbol, word in _UNITS[lang].items()}
    currencies = {symbol: (word, word, "", "") for symbol, word in _CURRENCIES[lang].items()}
    return Lexicon(
        cardinal=say,
        ordinal=say,
        year=_zh_year if lang == "zh" else say,
        point=_POINT[lang],
        minus=_MINUS[lang],
        decimal_comma=False,
        units=units,
        currencies=currencies,
        months=[],
        time=time,
        date=date,
        space=space,
        percent_prefix="百分之" if lang == "zh" else "",
    )
