"""Text cleanup and (streaming) segmentation: realistic LLM replies, numbers, abbreviations, CJK, markdown
split across fragments, first-clause flush, and a no-loss / no-duplication property over random
fragmentations."""

from __future__ import annotations

import random
import re
import time

import pytest

from wyoming_qwen3tts.service.segmenter import StreamSegmenter, clean_text, split_text

try:  # hypothesis is optional: the seeded random tests below cover the same property
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

REPLIES = [
    "Sure! Here's what I found:\n\n## Weather today\n- **Temperature:** 21.5°C (feels like 20°C)\n"
    "- *Humidity*: 45%\n- Wind: 10 km/h from the NW 🌬️\n\n1. First, close the windows.\n"
    "2. Then turn on the AC."
    "\n\nSee [the forecast](https://weather.com/today?x=1) or https://www.home-assistant.io/docs/automation. "
    "Have a nice day! 😊",
    "Dr. Smith arrived at 10:45 a.m. on Jan. 5. He paid $1,000.50 for 3.14 kg, i.e. about 50% more than the "
    "U.S. average... Wait... what? Really?! Yes. It was -5 degrees, e.g. very cold, and Mr. Jones left at "
    "9:30 p.m. The end.",
    "Here is the automation you asked for:\n```yaml\nalias: Lights on\ntrigger:\n  - platform: sun\n```\n"
    "Save it with `automations.yaml` and reload. The entity is `light.living_room`.",
    "I turned on the **kitchen lights** and set the _thermostat_ to 21 degrees. 👍 Anything else?",
    "> Note: the __front door__ is unlocked.\n\n### Devices\n* Front door lock — unlocked\n"
    "* Garage ~~closed~~ open"
    "\n\n| Room | Temp |\n|---|---|\n| Kitchen | 21.5 |\n| Bedroom | 19 |",
    "The meeting is on 2024-01-15 at 14:00. Prices rose by 3.5% to €1.299,00; that's about US$1,400. "
    "Call +1 555-0100 or email help@example.com. Version v1.2.3 fixed it [1].",
    "你好，我是通义千问。今天天气很好，气温二十一度！你想做什么？我们可以去公园散步；或者在家看电影。",
    "こんにちは、元気ですか？今日はいい天気ですね。午後三時に会いましょう！",
    "안녕하세요. 저는 AI 비서입니다! 오늘 날씨가 좋네요?",
    "Привет! Как дела? Сегодня хорошая погода, около 21 градуса. До встречи.",
    "Am 3. Oktober ist Feiertag. Das Wetter wird schön, ca. 20 Grad, z.B. in München. Bis bald!",
    "Well... I think so. <b>Bold</b> &amp; <i>italic</i> text<br>with tags. The my_var_name works.",
    "Qwen3-TTS 是一个语音合成模型，支持10种语言。It supports English too.",
]

_NON_SPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_NON_SPACED}]|[^\W_{_NON_SPACED}]+(?:[.:'’][^\W_{_NON_SPACED}]+|,\d+)*")
_MARKUP = re.compile(
    r"[*_`\[\]{}|~\\\n]|#(?!\d)|https?:|(?<![\w.])www\.|\]\(|</?[a-z]+>|[\U0001F300-\U0001FAFF\u2600-\u27bf]"
)


def tokens(text: str) -> list[str]:
    """Words in order; numbers like 3.14 / 1,000 / 10:45 are one token, CJK characters one each."""
    return _TOKEN.findall(text)


def stream(pieces: list[str], **kwargs) -> list[str]:
    segmenter = StreamSegmenter(**kwargs)
    out: list[str] = []
    for piece in pieces:
        out.extend(segmenter.feed(piece))
    return out + segmenter.finish()


def random_pieces(text: str, rng: random.Random) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        size = rng.choice([1, 1, 2, 3, 5, 8, 13, 40])
        pieces.append(text[i : i + size])
        i += size
    return pieces


def assert_speakable(segments: list[str]) -> None:
    for segment in segments:
        assert segment and segment == segment.strip(), segments
        assert not _MARKUP.search(segment), segment
        assert re.search(r"[^\W_]", segment), segment


# --- clean_text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("**Bold** and *italic* and __strong__ and _em_.", "Bold and italic and strong and em."),
        ("The my_var and snake_case_name stay words.", "The my var and snake case name stay words."),
        ("## Heading\nText", "Heading. Text"),
        ("- one\n- two\n* three\n1. four\n2) five", "one. two. three. four. five"),
        ("> quoted **text**", "quoted text"),
        ("Use `light.turn_on` now.", "Use light.turn on now."),
        ("Read [the docs](https://example.com/a_b) today.", "Read the docs today."),
        ("Visit https://www.home-assistant.io/docs/x?y=1.", "Visit home-assistant.io."),
        ("Go to www.example.org, it is nice.", "Go to example.org, it is nice."),
        ("Great job 🎉! Thumbs up 👍🏽 and flags 🇩🇪.", "Great job! Thumbs up and flags."),
        (
            "Pi is 3.14, 1,000 items, 10:45, -5 °C, 50%, $5.99, €1.299,00.",
            "Pi is 3.14, 1,000 items, 10:45, -5 °C, 50%, $5.99, €1.299,00.",
        ),
        (
            "Quotes \"like this\" and 'this' — fine; ok: yes!",
            "Quotes \"like this\" and 'this' — fine; ok: yes!",
        ),
        ("<p>Hello <b>world</b></p>&nbsp;&amp; you", "Hello world & you"),
        ("Code:\n```python\nprint('x')\n```\nDone.", "Code: Done."),
        ("Unclosed:\n```\nsecret code", "Unclosed:"),
        ("Inline ```one-liner``` here", "Inline one-liner here"),
        ("---\n***\n|---|:---:|", ""),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "a, b. 1, 2"),
        ("- [ ] todo\n- [x] done", "todo. done"),
        ("Cited [1] and [2, 3] facts.", "Cited and facts."),
        ("We're #1 at C#.", "We're #1 at C."),
        ("A -> B => C", "A B C"),
        ("你好，世界！\n第二行", "你好，世界！第二行"),
        ("标题\n内容", "标题。内容"),
        ("   \n\t  ", ""),
        ("🎉🎉 **  ** `` ", ""),
        ("", ""),
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_clean_text_of_replies_has_no_markup():
    for reply in REPLIES:
        cleaned = clean_text(reply)
        assert cleaned and not _MARKUP.search(cleaned), cleaned
        assert "alias" not in cleaned and "platform" not in cleaned  # fenced YAML is not read aloud


# --- split_text ------------------------------------------------------------------------------------------


def test_split_text_realistic_reply():
    assert split_text(REPLIES[0]) == [
        "Sure!",
        "Here's what I found:",
        "Weather today",
        "Temperature: 21.5°C (feels like 20°C)",
        "Humidity: 45%",
        "Wind: 10 km/h from the NW",
        "First, close the windows.",
        "Then turn on the AC.",
        "See the forecast or home-assistant.io.",
        "Have a nice day!",
    ]


def test_split_text_numbers_and_abbreviations():
    segments = split_text(REPLIES[1])
    assert segments == [
        "Dr. Smith arrived at 10:45 a.m. on Jan. 5. He paid $1,000.50 for 3.14 kg, i.e. about 50% more than "
        "the U.S. average...",
        "Wait... what?",
        "Really?!",
        "Yes.",
        "It was -5 degrees, e.g. very cold, and Mr. Jones left at 9:30 p.m. The end.",
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("I paid approx. five dollars. Fine.", ["I paid approx. five dollars.", "Fine."]),
        ("J. R. R. Tolkien wrote it. Yes.", ["J. R. R. Tolkien wrote it.", "Yes."]),
        ("Visit example.com. Then rest.", ["Visit example.com.", "Then rest."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("**Done.** Next step.", ["Done.", "Next step."]),
        ("Am 3. Oktober. Gut.", ["Am 3. Oktober.", "Gut."]),
        ("It happened in 2024. Next year too.", ["It happened in 2024.", "Next year too."]),
        ("Ends with a number 3.", ["Ends with a number 3."]),
        ("你好。我是AI！好吗？好；再见", ["你好。", "我是AI！", "好吗？", "好；", "再见"]),
        ("中文!English. 日本語です。", ["中文!", "English.", "日本語です。"]),
        ("Line one\nLine two\n\nLine three", ["Line one", "Line two", "Line three"]),
    ],
)
def test_split_text_boundaries(text, expected):
    assert split_text(text) == expected


def test_split_text_cjk_replies():
    assert split_text(REPLIES[6]) == [
        "你好，我是通义千问。",
        "今天天气很好，气温二十一度！",
        "你想做什么？",
        "我们可以去公园散步；",
        "或者在家看电影。",
    ]
    assert split_text(REPLIES[7]) == [
        "こんにちは、元気ですか？",
        "今日はいい天気ですね。",
        "午後三時に会いましょう！",
    ]
    assert split_text(REPLIES[8]) == ["안녕하세요.", "저는 AI 비서입니다!", "오늘 날씨가 좋네요?"]


def test_split_text_empty_and_whitespace():
    assert split_text("") == []
    assert split_text("   \n\n\t ") == []
    assert split_text("🎉 😊 **") == []
    assert split_text("```\ncode only\n```") == []


def test_split_text_long_input_without_punctuation():
    rng = random.Random(1)
    words = [rng.choice(["alpha", "beta", "gamma", "delta", "epsilon", "3.14", "1,000"]) for _ in range(3000)]
    text = " ".join(words)
    segments = split_text(text, max_chars=200)
    assert all(len(segment) <= 200 for segment in segments)
    assert tokens(" ".join(segments)) == tokens(text)
    assert len(segments) > 50


def test_split_text_long_sentence_prefers_clause_punctuation():
    clause = "the lights in the kitchen are on and the heating is set to twenty degrees"
    text = ", ".join([clause] * 8) + "."
    segments = split_text(text, max_chars=200)
    assert all(len(segment) <= 200 for segment in segments)
    assert all(segment.endswith((",", ".")) for segment in segments)
    assert tokens(" ".join(segments)) == tokens(text)


def test_split_text_long_cjk_without_punctuation():
    text = "今天天气很好我们一起去公园散步吧" * 60
    segments = split_text(text, max_chars=100)
    assert all(len(segment) <= 100 for segment in segments)
    assert "".join(segments) == text


def test_split_text_overlong_token_is_never_cut():
    token = "x" * 900
    assert split_text(f"short words {token} more words", max_chars=100) == [
        "short words",
        token,
        "more words",
    ]
    assert split_text(token, max_chars=100) == [token]


# --- StreamSegmenter -------------------------------------------------------------------------------------


def test_stream_emits_sentence_as_soon_as_next_character_arrives():
    segmenter = StreamSegmenter()
    assert segmenter.feed("Great job!") == []  # may still become "!!" or '!"'
    assert segmenter.feed(" ") == ["Great job!"]  # whitespace after "!" is enough
    assert segmenter.feed("Hello there.") == []  # "3." + "14" must stay possible
    assert segmenter.feed(" ") == []  # "approx. five": one more character decides
    assert segmenter.feed("H") == ["Hello there."]
    assert segmenter.feed("ow are you") == []
    assert segmenter.finish() == ["How are you"]


def test_stream_never_splits_numbers_across_fragments():
    segmenter = StreamSegmenter()
    assert segmenter.feed("The value of pi is about 3.") == []
    assert segmenter.feed("14159 and it costs 1,") == []
    assert segmenter.feed("000 dollars at 10:") == []
    assert segmenter.feed("45 today. Bye") == [
        "The value of pi is about 3.14159 and it costs 1,000 dollars at 10:45 today."
    ]
    assert segmenter.finish() == ["Bye"]


def test_stream_first_clause_flush():
    segmenter = StreamSegmenter()
    text = "Sure, I turned on the kitchen lights, and the living room lights are on too. Anything else?"
    emitted_at = {}
    for index, word in enumerate(re.findall(r"\S+\s*", text)):
        for segment in segmenter.feed(word):
            emitted_at[segment] = index
    rest = segmenter.finish()
    first = "Sure, I turned on the kitchen lights,"
    assert list(emitted_at) + rest == [first, "and the living room lights are on too.", "Anything else?"]
    assert emitted_at[first] == 6  # as soon as "lights, " arrived, long before the sentence ended
    # only the first clause is flushed early: later commas wait for the sentence end
    assert emitted_at["and the living room lights are on too."] > 12


def test_stream_first_clause_not_flushed_when_the_sentence_is_complete():
    segmenter = StreamSegmenter()
    assert segmenter.feed("I turned on all the lights, okay.") == []  # only the lookahead is missing
    assert segmenter.feed(" Next") == ["I turned on all the lights, okay."]


def test_stream_first_clause_needs_enough_words():
    segmenter = StreamSegmenter(first_clause_words=4)
    assert segmenter.feed("Yes, it is. ") == []
    assert segmenter.feed("Ok") == ["Yes, it is."]
    assert StreamSegmenter(first_clause_words=2).feed("Yes sir, it is") == ["Yes sir,"]
    assert StreamSegmenter(first_clause_words=None).feed("One two three four five, six") == []


def test_stream_first_clause_cjk():
    segmenter = StreamSegmenter()
    assert segmenter.feed("好的，") == []  # too short
    assert segmenter.feed("今天的天气非常好，我们") == ["好的，今天的天气非常好，"]
    assert segmenter.finish() == ["我们"]


def test_stream_llm_tokens_like_home_assistant_sends_them():
    tokens_in = [
        "Sure",
        "!",
        " I",
        "'ve",
        " turned",
        " on",
        " the",
        " **",
        "kitchen",
        " lights",
        "**",
        ",",
        " set",
        " the",
        " thermostat",
        " to",
        " 21",
        ".",
        "5",
        " °C",
        ",",
        " and",
        " locked",
        " the",
        " front",
        " door",
        ".",
        " 🔒",
        "\n\n",
        "Here",
        "'s",
        " what",
        " else",
        ":",
        "\n",
        "-",
        " Garage",
        ":",
        " closed",
        "\n",
        "-",
        " Windows",
        ":",
        " 2",
        " open",
        " (",
        "see",
        " [",
        "details",
        "](",
        "https://",
        "example",
        ".com",
        ")",
        ")",
        "\n\n",
        "Anything",
        " else",
        "?",
    ]
    segmenter = StreamSegmenter()
    emitted = [(token, segmenter.feed(token)) for token in tokens_in]
    emitted = [(token, out) for token, out in emitted if out]
    assert emitted == [
        (" I", ["Sure!"]),
        (
            " 🔒",
            ["I've turned on the kitchen lights, set the thermostat to 21.5 °C, and locked the front door."],
        ),
        ("\n", ["Here's what else:"]),
        ("\n", ["Garage: closed"]),
        ("\n\n", ["Windows: 2 open (see details)"]),
    ]
    assert segmenter.finish() == ["Anything else?"]


def test_stream_rejects_bad_max_chars():
    with pytest.raises(ValueError):
        StreamSegmenter(max_chars=0)


@pytest.mark.parametrize(
    "text",
    ["x" * 5000, "a," * 2500, "a." * 2500, "a—" * 2500, "好，" * 2500, "word " * 1000],
    ids=["no-space", "commas", "dots", "dashes", "cjk-commas", "words"],
)
def test_stream_character_by_character_is_linear(text):
    start = time.perf_counter()
    segments = stream(list(text))
    assert time.perf_counter() - start < 1.5
    assert tokens(" ".join(segments)) == tokens(clean_text(text))


def test_stream_finish_flushes_and_resets():
    segmenter = StreamSegmenter()
    assert segmenter.feed("No punctuation at the end") == []
    assert segmenter.finish() == ["No punctuation at the end"]
    assert segmenter.finish() == []
    assert segmenter.feed("It is 3.") == []
    assert segmenter.finish() == ["It is 3."]
    assert segmenter.feed("") == []
    assert segmenter.feed("   \n  ") == []
    assert segmenter.finish() == []


def test_stream_markdown_split_across_fragments():
    text = "**This is bold. Still bold** and [a link](https://example.com/x_y) plus `code`.\n- item _one_"
    expected = ["This is bold.", "Still bold and a link plus code.", "item one"]
    assert split_text(text) == expected
    assert stream(list(text)) == expected


def test_stream_drops_fenced_code_fed_character_by_character():
    text = REPLIES[2]
    expected = [
        "Here is the automation you asked for:",
        "Save it with automations.yaml and reload.",
        "The entity is light.living room.",
    ]
    assert split_text(text) == expected
    assert stream(list(text)) == expected
    assert stream(["``", "`py", "thon\nx = 1\n`", "``\nAfter."]) == ["After."]
    assert stream(["```\nnever closed. Still code.\n"]) == []


@pytest.mark.parametrize("reply", REPLIES, ids=[f"reply{i}" for i in range(len(REPLIES))])
def test_stream_random_fragmentation_keeps_every_word_once(reply):
    expected = tokens(clean_text(reply))
    rng = random.Random(hash(reply) & 0xFFFF)
    for _ in range(40):
        pieces = random_pieces(reply, rng)
        for kwargs in ({}, {"max_chars": 40}, {"first_clause_words": None}):
            segments = stream(pieces, **kwargs)
            assert tokens(" ".join(segments)) == expected, (pieces, segments)
            assert_speakable(segments)


def test_stream_without_first_clause_matches_split_text():
    rng = random.Random(7)
    for reply in REPLIES:
        for _ in range(10):
            assert stream(random_pieces(reply, rng), first_clause_words=None) == split_text(reply)


_WORDS = (
    "the kitchen lights are on Dr. Mr. e.g. U.S. 3.14 1,000 10:45 -5 50% $9.99 approx. a.m. "
    "**bold** *it* _em_ snake_case `code` [link](http://x.io/a) https://www.example.com/p 🎉 "
    "你好 世界 天气 こんにちは 안녕하세요 Привет ... … — –"
).split()
_SEPARATORS = [" ", " ", " ", ". ", ", ", "! ", "? ", "; ", ": ", "\n", "\n\n", "。", "，", ".", ","]


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 60)):
        parts.append(rng.choice(_WORDS))
        parts.append(rng.choice(_SEPARATORS))
    return "".join(parts)


def test_stream_random_texts_keep_every_word_once():
    rng = random.Random(1234)
    for _ in range(300):
        text = _random_text(rng)
        expected = tokens(clean_text(text))
        kwargs = rng.choice([{}, {"max_chars": 30}, {"first_clause_words": 1}, {"first_clause_words": None}])
        segments = stream(random_pieces(text, rng), **kwargs)
        assert tokens(" ".join(segments)) == expected, (text, segments)
        assert_speakable(segments)


if given is not None:

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        words=st.lists(st.sampled_from(_WORDS), max_size=40),
        separators=st.lists(st.sampled_from(_SEPARATORS), min_size=40, max_size=40),
        cuts=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=200),
        max_chars=st.sampled_from([25, 60, 400]),
    )
    def test_stream_property_hypothesis(words, separators, cuts, max_chars):
        text = "".join(word + sep for word, sep in zip(words, separators))
        pieces, i = [], 0
        for size in cuts * (len(text) // max(1, sum(cuts)) + 1):
            if i >= len(text):
                break
            pieces.append(text[i : i + size])
            i += size
        segments = stream(pieces, max_chars=max_chars)
        assert tokens(" ".join(segments)) == tokens(clean_text(text))
        assert_speakable(segments)
