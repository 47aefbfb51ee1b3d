"""Script-based language guess and BCP-47 mapping for the model's 10 languages."""

from __future__ import annotations

import pytest

from wyoming_qwen3tts.core.languages import BCP47, from_bcp47, to_bcp47
from wyoming_qwen3tts.service.language import detect_language

MODEL_LANGUAGES = {
    "english",
    "chinese",
    "german",
    "italian",
    "portuguese",
    "spanish",
    "japanese",
    "korean",
    "french",
    "russian",
}


def test_bcp47_covers_the_model_languages():
    assert set(BCP47) == MODEL_LANGUAGES
    assert len(set(BCP47.values())) == 10
    for name, code in BCP47.items():
        assert to_bcp47(name) == code
        assert from_bcp47(code) == name


@pytest.mark.parametrize(
    "name, code",
    [
        ("English", "en"),
        (" CHINESE ", "zh"),
        ("sichuan_dialect", "zh"),
        ("beijing_dialect", "zh"),
        ("auto", None),
        ("", None),
        (None, None),
        ("klingon", None),
    ],
)
def test_to_bcp47(name, code):
    assert to_bcp47(name) == code


@pytest.mark.parametrize(
    "code, name",
    [
        ("en", "english"),
        ("en-US", "english"),
        ("EN_gb", "english"),
        ("zh-CN", "chinese"),
        ("zh-Hans-CN", "chinese"),
        ("zh_TW", "chinese"),
        ("cmn", "chinese"),
        ("pt-BR", "portuguese"),
        ("es-419", "spanish"),
        ("fr-CA", "french"),
        ("de-AT", "german"),
        ("it-IT", "italian"),
        ("ja-JP", "japanese"),
        ("ko-KR", "korean"),
        ("ru-RU", "russian"),
        ("deu", "german"),
        ("English", "english"),
        ("auto", None),
        ("", None),
        (None, None),
        ("nl-NL", None),
        ("yue", None),
    ],
)
def test_from_bcp47(code, name):
    assert from_bcp47(code) == name


@pytest.mark.parametrize(
    "text, language",
    [
        ("你好，我是通义千问。今天天气很好！", "chinese"),
        ("東京", "chinese"),  # Han without kana is Chinese by rule
        ("Qwen3-TTS 是一个语音合成模型，支持十种语言。", "chinese"),  # brand names do not outvote Han
        ("こんにちは、元気ですか？", "japanese"),
        ("東京に行きます。", "japanese"),  # any kana makes Han Japanese
        ("カタカナ", "japanese"),
        ("안녕하세요. 저는 AI 비서입니다!", "korean"),
        ("Привет! Как дела?", "russian"),
        ("Добрий день, як справи?", "russian"),  # Ukrainian: the closest model language
        ("The character 水 means water.", None),  # one Han character does not outvote English
        ("Hello there, how are you today?", None),
        ("Turn on the lights in the kitchen.", None),
        ("", None),
        ("   ", None),
        ("1234 5678 !?", None),
        ("🎉😊", None),
    ],
)
def test_detect_language_by_script(text, language):
    assert detect_language(text) == language


@pytest.mark.parametrize(
    "text, language",
    [
        ("Das Wetter ist heute schön und sonnig.", "german"),
        ("Wie spät ist es?", "german"),
        ("Danke schön.", "german"),
        ("Ich habe das Licht in der Küche eingeschaltet.", "german"),
        ("Il fait très beau aujourd'hui.", "french"),
        ("Bonjour, comment ça va?", "french"),
        ("Je suis très content de vous voir.", "french"),
        ("¿Qué hora es?", "spanish"),
        ("Hola, ¿cómo estás? Hoy hace muy buen tiempo.", "spanish"),
        ("Você está bem? Não, obrigado.", "portuguese"),
        ("Ação e informação são importantes.", "portuguese"),
        ("Ho acceso le luci della cucina e del soggiorno.", "italian"),
        ("Oggi è una bella giornata, però domani piove.", "italian"),
    ],
)
def test_detect_language_confident_latin_hints(text, language):
    assert detect_language(text) == language


@pytest.mark.parametrize(
    "text",
    [
        "Guten Morgen!",  # too little evidence
        "The weather in München is nice today.",  # an umlaut in an English sentence
        "Call Mr. Müller about the report.",
        "I love Zürich and Köln.",
        "Café",
        "Ciao",
    ],
)
def test_detect_language_unsure_latin_is_none(text):
    assert detect_language(text) is None
