"""Lexicons of the European model languages: English, German, French, Spanish, Italian, Portuguese, Russian.

Numbers, ordinals and years come from num2words (maintained, pure Python; it covers all seven); the words
that go with them (units, currencies, months, how a time or a date is said) are our own small tables.
Cases and genders are kept simple (nominative, the unit's own plural): understandable, never wrong digits.
"""

from __future__ import annotations

from typing import Callable

from num2words import num2words

from .rules import Lexicon


def _n2w(lang: str, to: str = "cardinal") -> Callable[[int], str]:
    def say(n: int) -> str:
        return str(num2words(n, lang=lang, to=to))

    return say


# symbol -> (singular, plural); the same symbols in every language.
_UNITS = {
    "en": {
        "°C": ("degree Celsius", "degrees Celsius"),
        "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
        "°": ("degree", "degrees"),
        "%": ("percent", "percent"),
        "km/h": ("kilometre per hour", "kilometres per hour"),
        "mph": ("mile per hour", "miles per hour"),
        "km": ("kilometre", "kilometres"),
        "m": ("metre", "metres"),
        "cm": ("centimetre", "centimetres"),
        "mm": ("millimetre", "millimetres"),
        "kg": ("kilogram", "kilograms"),
        "g": ("gram", "grams"),
        "l": ("litre", "litres"),
        "kWh": ("kilowatt hour", "kilowatt hours"),
        "kW": ("kilowatt", "kilowatts"),
        "W": ("watt", "watts"),
        "h": ("hour", "hours"),
        "min": ("minute", "minutes"),
        "s": ("second", "seconds"),
    },
    "de": {
        "°C": ("Grad Celsius", "Grad Celsius"),
        "°F": ("Grad Fahrenheit", "Grad Fahrenheit"),
        "°": ("Grad", "Grad"),
        "%": ("Prozent", "Prozent"),
        "km/h": ("Kilometer pro Stunde", "Kilometer pro Stunde"),
        "mph": ("Meile pro Stunde", "Meilen pro Stunde"),
        "km": ("Kilometer", "Kilometer"),
        "m": ("Meter", "Meter"),
        "cm": ("Zentimeter", "Zentimeter"),
        "mm": ("Millimeter", "Millimeter"),
        "kg": ("Kilogramm", "Kilogramm"),
        "g": ("Gramm", "Gramm"),
        "l": ("Liter", "Liter"),
        "kWh": ("Kilowattstunde", "Kilowattstunden"),
        "kW": ("Kilowatt", "Kilowatt"),
        "W": ("Watt", "Watt"),
        "h": ("Stunde", "Stunden"),
        "min": ("Minute", "Minuten"),
        "s": ("Sekunde", "Sekunden"),
    },
    "fr": {
        "°C": ("degré Celsius", "degrés Celsius"),
        "°F": ("degré Fahrenheit", "degrés Fahrenheit"),
        "°": ("degré", "degrés"),
        "%": ("pour cent", "pour cent"),
        "km/h": ("kilomètre par heure", "kilomètres par heure"),
        "km": ("kilomètre", "kilomètres"),
        "m": ("mètre", "mètres"),
        "cm": ("centimètre", "centimètres"),
        "mm": ("millimètre", "millimètres"),
        "kg": ("kilogramme", "kilogrammes"),
        "g": ("gramme", "grammes"),
        "l": ("litre", "litres"),
        "kWh": ("kilowattheure", "kilowattheures"),
        "kW": ("kilowatt", "kilowatts"),
        "W": ("watt", "watts"),
        "h": ("heure", "heures"),
        "min": ("minute", "minutes"),
        "s": ("seconde", "secondes"),
    },
    "es": {
        "°C": ("grado Celsius", "grados Celsius"),
        "°F": ("grado Fahrenheit", "grados Fahrenheit"),
        "°": ("grado", "grados"),
        "%": ("por ciento", "por ciento"),
        "km/h": ("kilómetro por hora", "kilómetros por hora"),
        "km": ("kilómetro", "kilómetros"),
        "m": ("metro", "metros"),
        "cm": ("centímetro", "centímetros"),
        "mm": ("milímetro", "milímetros"),
        "kg": ("kilogramo", "kilogramos"),
        "g": ("gramo", "gramos"),
        "l": ("litro", "litros"),
        "kWh": ("kilovatio hora", "kilovatios hora"),
        "kW": ("kilovatio", "kilovatios"),
        "W": ("vatio", "vatios"),
        "h": ("hora", "horas"),
        "min": ("minuto", "minutos"),
        "s": ("segundo", "segundos"),
    },
    "it": {
        "°C": ("grado Celsius", "gradi Celsius"),
        "°F": ("grado Fahrenheit", "gradi Fahrenheit"),
        "°": ("grado", "gradi"),
        "%": ("per cento", "per cento"),
        "km/h": ("chilometro orario", "chilometri orari"),
        "km": ("chilometro", "chilometri"),
        "m": ("metro", "metri"),
        "cm": ("centimetro", "centimetri"),
        "mm": ("millimetro", "millimetri"),
        "kg": ("chilogrammo", "chilogrammi"),
        "g": ("grammo", "grammi"),
        "l": ("litro", "litri"),
        "kWh": ("chilowattora", "chilowattora"),
        "kW": ("chilowatt", "chilowatt"),
        "W": ("watt", "watt"),
        "h": ("ora", "ore"),
        "min": ("minuto", "minuti"),
        "s": ("secondo", "secondi"),
    },
    "pt": {
        "°C": ("grau Celsius", "graus Celsius"),
        "°F": ("grau Fahrenheit", "graus Fahrenheit"),
        "°": ("grau", "graus"),
        "%": ("por cento", "por cento"),
        "km/h": ("quilómetro por hora", "quilómetros por hora"),
        "km": ("quilómetro", "quilómetros"),
        "m": ("metro", "metros"),
        "cm": ("centímetro", "centímetros"),
        "mm": ("milímetro", "milímetros"),
        "kg": ("quilograma", "quilogramas"),
        "g": ("grama", "gramas"),
        "l": ("litro", "litros"),
        "kWh": ("quilowatt-hora", "quilowatts-hora"),
        "kW": ("quilowatt", "quilowatts"),
        "W": ("watt", "watts"),
        "h": ("hora", "horas"),
        "min": ("minuto", "minutos"),
        "s": ("segundo", "segundos"),
    },
    "ru": {  # the genitive plural: what follows most numbers
        "°C": ("градус Цельсия", "градусов Цельсия"),
        "°F": ("градус Фаренгейта", "градусов Фаренгейта"),
        "°": ("градус", "градусов"),
        "%": ("процент", "процентов"),
        "km/h": ("километр в час", "километров в час"),
        "km": ("километр", "километров"),
        "m": ("метр", "метров"),
        "cm": ("сантиметр", "сантиметров"),
        "mm": ("миллиметр", "миллиметров"),
        "kg": ("килограмм", "килограммов"),
        "g": ("грамм", "граммов"),
        "l": ("литр", "литров"),
        "kWh": ("киловатт-час", "киловатт-часов"),
        "kW": ("киловатт", "киловатт"),
        "W": ("ватт", "ватт"),
        "h": ("час", "часов"),
        "min": ("минута", "минут"),
        "s": ("секунда", "секунд"),
    },
}

_CURRENCIES = {
    "en": {
        "€": ("euro", "euros", "cent", "cents"),
        "EUR": ("euro", "euros", "cent", "cents"),
        "$": ("dollar", "dollars", "cent", "cents"),
        "USD": ("dollar", "dollars", "cent", "cents"),
        "£": ("pound", "pounds", "penny", "pence"),
        "¥": ("yen", "yen", "", ""),
    },
    "de": {
        "€": ("Euro", "Euro", "Cent", "Cent"),
        "EUR": ("Euro", "Euro", "Cent", "Cent"),
        "$": ("Dollar", "Dollar", "Cent", "Cent"),
        "USD": ("Dollar", "Dollar", "Cent", "Cent"),
        "£": ("Pfund", "Pfund", "Pence", "Pence"),
        "¥": ("Yen", "Yen", "", ""),
    },
    "fr": {
        "€": ("euro", "euros", "centime", "centimes"),
        "EUR": ("euro", "euros", "centime", "centimes"),
        "$": ("dollar", "dollars", "cent", "cents"),
        "£": ("livre", "livres", "penny", "pence"),
        "¥": ("yen", "yens", "", ""),
    },
    "es": {
        "€": ("euro", "euros", "céntimo", "céntimos"),
        "EUR": ("euro", "euros", "céntimo", "céntimos"),
        "$": ("dólar", "dólares", "centavo", "centavos"),
        "£": ("libra", "libras", "penique", "peniques"),
        "¥": ("yen", "yenes", "", ""),
    },
    "it": {
        "€": ("euro", "euro", "centesimo", "centesimi"),
        "EUR": ("euro", "euro", "centesimo", "centesimi"),
        "$": ("dollaro", "dollari", "centesimo", "centesimi"),
        "£": ("sterlina", "sterline", "penny", "pence"),
        "¥": ("yen", "yen", "", ""),
    },
    "pt": {
        "€": ("euro", "euros", "cêntimo", "cêntimos"),
        "EUR": ("euro", "euros", "cêntimo", "cêntimos"),
        "$": ("dólar", "dólares", "centavo", "centavos"),
        "R$": ("real", "reais", "centavo", "centavos"),
        "£": ("libra", "libras", "pêni", "pence"),
        "¥": ("iene", "ienes", "", ""),
    },
    "ru": {
        "€": ("евро", "евро", "цент", "центов"),
        "EUR": ("евро", "евро", "цент", "центов"),
        "$": ("доллар", "долларов", "цент", "центов"),
        "₽": ("рубль", "рублей", "копейка", "копеек"),
        "£": ("фунт", "фунтов", "пенни", "пенсов"),
        "¥": ("иена", "иен", "", ""),
    },
}

_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
    "ru": "января февраля марта апреля мая июня июля августа сентября октября ноября декабря",
}


def _times(lang: str) -> Callable[[int, int], str]:
    say = _n2w(lang)

    def en(h: int, m: int) -> str:
        if m == 0:
            return f"{say(h)} o'clock" if 1 <= h <= 12 else f"{say(h)} hundred"
        return f"{say(h)} oh {say(m)}" if m < 10 else f"{say(h)} {say(m)}"

    forms: dict[str, Callable[[int, int], str]] = {
        "en": en,
        "de": lambda h, m: f"{say(h)} Uhr" + (f" {say(m)}" if m else ""),
        "fr": lambda h, m: f"{say(h)} heure{'s' if h > 1 else ''}" + (f" {say(m)}" if m else ""),
        "es": lambda h, m: f"{say(h)} horas" + (f" y {say(m)}" if m else ""),
        "it": lambda h, m: f"{say(h)}" + (f" e {say(m)}" if m else ""),
        "pt": lambda h, m: f"{say(h)} horas" + (f" e {say(m)}" if m else ""),
        "ru": lambda h, m: f"{say(h)} " + (say(m) if m >= 10 else f"ноль {say(m)}" if m else "ноль ноль"),
    }
    return forms[lang]


def _dates(lang: str) -> Callable[[int, int, int], str]:
    say, nth, year = (
        _n2w(lang),
        _n2w(lang, "ordinal"),
        _n2w(lang, "year" if lang in ("en", "de") else "cardinal"),
    )
    months = _MONTHS[lang].split()

    def form(y: int, m: int, d: int) -> str:
        month = months[m - 1]
        if lang == "en":
            return f"{month} {nth(d)}, {year(y)}"
        if lang == "de":
            return f"{nth(d)}r {month} {year(y)}"  # "dritter Dezember"
        if lang in ("fr", "it"):
            return f"{nth(d) if d == 1 else say(d)} {month} {year(y)}"
        if lang == "ru":
            return f"{say(d)} {month} {year(y)} года"
        return f"{say(d)} de {month} de {year(y)}"  # es, pt

    return form


_POINT = {"en": "point", "de": "Komma", "fr": "virgule", "es": "coma", "it": "virgola", "pt": "vírgula"}
_MINUS = {
    "en": "minus",
    "de": "minus",
    "fr": "moins",
    "es": "menos",
    "it": "meno",
    "pt": "menos",
    "ru": "минус",
}
_ORDINALS = {"en": "st|nd|rd|th", "fr": "er|re|ème|e", "es": "º|ª", "it": "º|ª", "pt": "º|ª"}
_AND = {"en": "and", "es": "con", "pt": "e", "it": "e", "fr": "et"}


def _ru_decimal(whole: int, frac: str) -> str:
    # "двадцать одна целая пять десятых": num2words knows the Russian fraction grammar.
    from decimal import Decimal

    return str(num2words(Decimal(f"{whole}.{frac}"), lang="ru"))


def lexicon(lang: str) -> Lexicon:
    """The lexicon of a BCP-47 primary code: en, de, fr, es, it, pt, ru."""
    return Lexicon(
        cardinal=_n2w(lang),
        ordinal=_n2w(lang, "ordinal"),
        year=_n2w(lang, "year") if lang in ("en", "de") else _n2w(lang),
        point=_POINT.get(lang, "запятая"),
        minus=_MINUS[lang],
        decimal_comma=lang != "en",
        units=_UNITS[lang],
        currencies=_CURRENCIES[lang],
        months=_MONTHS[lang].split(),
        time=_times(lang),
        date=_dates(lang),
        ordinal_suffix=_ORDINALS.get(lang, ""),
        and_word=_AND.get(lang, ""),
        month_first_slash=lang == "en",
        decimal=_ru_decimal if lang == "ru" else None,
        dot_date_ordinal=(lambda d: _n2w("de", "ordinal")(d) + "n") if lang == "de" else None,
        time_word="Uhr" if lang == "de" else "",  # "14:30 Uhr" is "vierzehn Uhr dreißig"
    )
