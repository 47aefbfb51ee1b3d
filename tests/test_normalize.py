"""Text normalization (service/normalize): reviewed golden tables per model language, and properties over
arbitrary text: it never raises, never drops or reorders a word, and leaves no digit behind."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wyoming_qwen3tts.service.normalize import LANGUAGES, normalize_text
from wyoming_qwen3tts.service.normalize.cjk import zh_cardinal

# (language, input, expected): reviewed by hand; one table per language.
GOLDENS = {
    "english": [
        ("It is 21.5 °C.", "It is twenty-one point five degrees Celsius."),
        ("Humidity 50 %, wind 3 km/h.", "Humidity fifty percent, wind three kilometres per hour."),
        ("At 14:30 and 7:05.", "At fourteen thirty and seven oh five."),
        ("On 2026-12-03.", "On December third, twenty twenty-six."),
        ("It costs $4.99 or 1,000 €.", "It costs four dollars and ninety-nine cents or one thousand euros."),
        ("The 3rd try, -5 °C, 1 kg.", "The third try, minus five degrees Celsius, one kilogram."),
        ("In 1999 we had 12 cats.", "In nineteen ninety-nine we had twelve cats."),
    ],
    "german": [
        ("Es sind 21,5 °C.", "Es sind einundzwanzig Komma fünf Grad Celsius."),
        ("Es sind 21.5 °C.", "Es sind einundzwanzig Komma fünf Grad Celsius."),
        ("50 % Luftfeuchte, 3 km/h Wind.", "fünfzig Prozent Luftfeuchte, drei Kilometer pro Stunde Wind."),
        ("Um 14:30 Uhr.", "Um vierzehn Uhr dreißig."),
        ("Um 14:30.", "Um vierzehn Uhr dreißig."),
        ("Am 3. Dezember.", "Am dritten Dezember."),
        ("Am 03.12.2026.", "Am dritter Dezember zweitausendsechsundzwanzig."),
        (
            "Das kostet 4,99 € oder 1.000 Euro.",
            "Das kostet vier Euro neunundneunzig Cent oder eintausend Euro.",
        ),
    ],
    "french": [
        ("Il fait 21,5 °C.", "Il fait vingt et un virgule cinq degrés Celsius."),
        ("À 14:30, le 1er mai.", "À quatorze heures trente, le premier mai."),
        (
            "Prix : 4,99 €, 50 %.",
            "Prix : quatre euros et quatre-vingt-dix-neuf centimes, cinquante pour cent.",
        ),
    ],
    "spanish": [
        ("Hace 21,5 °C.", "Hace veintiuno coma cinco grados Celsius."),
        (
            "A las 14:30, el 2026-12-03.",
            "A las catorce horas y treinta, el tres de diciembre de dos mil veintiséis.",
        ),
        ("Cuesta 4,99 €.", "Cuesta cuatro euros con noventa y nueve céntimos."),
    ],
    "italian": [
        ("Ci sono 21,5 °C.", "Ci sono ventuno virgola cinque gradi Celsius."),
        ("Alle 14:30, 3º posto.", "Alle quattordici e trenta, terzo posto."),
        ("Costa 4,99 €.", "Costa quattro euro e novantanove centesimi."),
    ],
    "portuguese": [
        ("Estão 21,5 °C.", "Estão vinte e um vírgula cinco graus Celsius."),
        ("Às 14:30, 50 %.", "Às catorze horas e trinta, cinquenta por cento."),
        ("Custa 4,99 €.", "Custa quatro euros e noventa e nove cêntimos."),
    ],
    "russian": [
        ("Сейчас 21,5 °C.", "Сейчас двадцать одна целая пять десятых градусов Цельсия."),
        ("В 14:30, 50 %.", "В четырнадцать тридцать, пятьдесят процентов."),
        ("Цена 4,99 €.", "Цена четыре евро девяносто девять центов."),
    ],
    "chinese": [
        ("现在21.5 °C。", "现在二十一点五摄氏度。"),
        ("湿度50%，14:30。", "湿度百分之五十，十四点三十分。"),
        ("2026年12月3日，10005人。", "二零二六年十二月三日，一万零五人。"),
    ],
    "japanese": [
        ("気温は21.5 °C。", "気温は二十一点五度。"),
        ("14:30、50%。", "十四時三十分、五十パーセント。"),
        ("2026-12-03、¥1000。", "二千二十六年十二月三日、千円。"),
    ],
    "korean": [
        ("기온은 21.5 °C.", "기온은 이십일 점 오 도."),
        ("14:30, 50%.", "십사시 삼십분, 오십 퍼센트."),
        ("₩1000.", "천 원."),
    ],
}


@pytest.mark.parametrize(
    "language, text, expected", [(lang, t, e) for lang, rows in GOLDENS.items() for t, e in rows]
)
def test_golden_tables(language, text, expected):
    assert normalize_text(text, language) == expected


def test_every_model_language_has_a_golden_table():
    from wyoming_qwen3tts.core.languages import BCP47

    assert set(GOLDENS) == set(BCP47) and {BCP47[name] for name in GOLDENS} == set(LANGUAGES)


def test_auto_unknown_and_digit_free_text_are_unchanged():
    assert normalize_text("It is 21.5 °C.", None) == "It is 21.5 °C."
    assert normalize_text("It is 21.5 °C.", "auto") == "It is 21.5 °C."
    assert normalize_text("It is 21.5 °C.", "klingon") == "It is 21.5 °C."
    assert normalize_text("No digits here.", "english") == "No digits here."
    assert normalize_text("Es sind 21,5 °C.", "de") == "Es sind einundzwanzig Komma fünf Grad Celsius."


def test_not_what_it_looks_like():
    # Impossible times and dates are read number by number; ids read digit by digit; "1990s" no duration.
    assert normalize_text("25:99", "english") == "twenty-five:ninety-nine"
    impossible = normalize_text("2026-13-45", "english")
    assert impossible == "two thousand and twenty-six-thirteen-forty-five"
    assert normalize_text("id 1234567890123456789", "english").startswith("id one two three")
    assert normalize_text("the 1990s", "english") == "the nineteen ninetys"


def test_chinese_numbers():
    cases = {0: "零", 10: "十", 15: "十五", 20: "二十", 105: "一百零五", 1005: "一千零五", 10005: "一万零五"}
    cases.update(
        {
            100000: "十万",
            1000000: "一百万",
            20000001: "二千万零一",
            123456789: "一亿二千三百四十五万六千七百八十九",
        }
    )
    for n, words in cases.items():
        assert zh_cardinal(n) == words, n


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüéèàñçø", min_size=4, max_size=9)
_NUMBERISH = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda f: f"{f:.2f}"),
    st.sampled_from(
        ["21.5 °C", "50 %", "3 km/h", "14:30", "2026-12-03", "$4.99", "4,99 €", "1.000", "3rd", "3."]
    ),
    st.sampled_from(["1,5", "12:00", "03.12.2026", "12/03/2026", "-5 °F", "7 kWh", "1990s", "2e", "1º"]),
)
_PUNCT = st.sampled_from([" ", ", ", ". ", "; ", " - ", "\n", "! ", "? "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    language=st.sampled_from(sorted(GOLDENS)),
    parts=st.lists(st.tuples(st.one_of(_WORD, _NUMBERISH), _PUNCT), max_size=12),
)
def test_never_drops_or_reorders_words_and_leaves_no_digit(language, parts):
    text = "".join(token + sep for token, sep in parts)
    out = normalize_text(text, language)
    words = [token for token, _ in parts if re.fullmatch(r"[^\W\d_]+", token)]
    position = 0
    for word in words:  # every word, in order, as a whole word of the output
        found = re.compile(rf"(?<![^\W\d_]){re.escape(word)}(?![^\W\d_])").search(out, position)
        assert found is not None, (word, text, out)
        position = found.end()
    assert not re.search(r"\d", out), (text, out)


@settings(max_examples=200, deadline=None)
@given(language=st.sampled_from(sorted(GOLDENS) + ["auto", "xx"]), text=st.text(max_size=200))
def test_never_raises_on_any_text(language, text):
    out = normalize_text(text, language)
    assert isinstance(out, str)
    if not any(ch.isdigit() for ch in text):
        assert out == text
