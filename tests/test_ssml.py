"""SSML (issue 28): the parser (service/ssml.py) on its own, then both front doors of the real server
in-process (tiny checkpoint, greedy test engine: exact sample counts, so a break is exactly its length)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from tests.fixtures.server_process import free_port
from tests.fixtures.server_thread import ServerThread, load_test_engine
from wyoming_qwen3tts.service.delivery import PcmShaper
from wyoming_qwen3tts.service.ssml import SsmlStream, parse, plain_text
from wyoming_qwen3tts.settings import Settings


def _seen(segments) -> list[tuple]:
    return [
        (str(s), getattr(s, "pause", None), getattr(s, "rate", 1.0), getattr(s, "language", None))
        for s in segments
    ]


# -- the parser -------------------------------------------------------------------------------------------


def test_break_p_s_split_segments_and_carry_the_pause():
    got = _seen(
        parse(
            '<speak>Hello <break time="500ms"/>world.<p>One.</p><s>Two</s>'
            '<break strength="strong"/>End</speak>'
        )
    )
    assert got == [
        ("Hello", None, 1.0, None),
        ("world.", 0.5, 1.0, None),
        ("One.", None, 1.0, None),
        ("Two", None, 1.0, None),
        ("End", 0.75, 1.0, None),
    ]
    assert _seen(parse('A <break time="2s"/> B <break time="99s"/> C'))[1:] == [
        ("B", 2.0, 1.0, None),
        ("C", 10.0, 1.0, None),
    ]


@pytest.mark.parametrize(
    "rate, expected",
    [
        ("slow", 0.8),
        ("x-fast", 1.5),
        ("150%", 1.5),
        ("+20%", 1.2),
        ("-10%", 0.9),
        ("1.3", 1.3),
        ("nonsense", 1.0),
        ("900%", 2.0),
    ],
)
def test_prosody_rate(rate, expected):
    (seg,) = parse(f'<prosody rate="{rate}">Words here.</prosody>')
    assert seg.rate == pytest.approx(expected)


def test_say_as_sub_and_lang():
    english = [
        str(s)
        for s in parse(
            '<say-as interpret-as="characters">ABC</say-as> <say-as interpret-as="cardinal">42</say-as> '
            '<say-as interpret-as="ordinal">3</say-as> '
            '<say-as interpret-as="date" format="dmy">01.05.2024</say-as> '
            '<say-as interpret-as="time">14:30</say-as> <say-as interpret-as="telephone">+49 170 12</say-as> '
            '<sub alias="World Wide Web">WWW</sub>',
            "english",
        )
    ]
    assert english == [
        "A B C forty-two third May first, twenty twenty-four fourteen thirty + 4 9, 1 7 0, 1 2 World Wide Web"
    ]
    german = parse(
        '<speak xml:lang="en">Hi. <lang xml:lang="de-DE">'
        '<say-as interpret-as="ordinal">3</say-as> Mai.</lang></speak>'
    )
    assert _seen(german) == [("Hi.", None, 1.0, "english"), ("dritte Mai.", None, 1.0, "german")]


def test_unknown_elements_keep_their_text_and_namespaces_are_fine():
    text = (
        '<?xml version="1.0"?>'
        '<speak version="1.1" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">'
        '<emphasis level="strong">Really</emphasis> <audio src="x.wav">good</audio> &amp; '
        '<mark name="m"/>fine.</speak>'
    )
    assert _seen(parse(text)) == [("Really good & fine.", None, 1.0, "english")]


@pytest.mark.parametrize(
    "text, spoken",
    [
        ("<speak>broken <b>unclosed</speak>", "broken unclosed"),
        ("Tom & Jerry <break/> ok", "Tom & Jerry ok"),
        ('<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><speak>&a;&a; hi</speak>', "hi"),
        ('<!DOCTYPE x SYSTEM "file:///etc/passwd"><speak>safe</speak>', "safe"),
        ("<speak>" + "<s>" * 40 + "deep" + "</s>" * 40 + "</speak>", "deep"),
    ],
)
def test_malformed_or_unsafe_ssml_is_spoken_as_its_text(text, spoken):
    assert " ".join(str(s) for s in parse(text)) == spoken
    assert "<" not in plain_text(text)


def test_stream_releases_complete_parts_and_keeps_the_break_with_what_follows():
    stream = SsmlStream()
    parts = [
        '<speak xml:lang="de">Hallo ',
        "Welt. Wie <prosody ra",
        'te="fast">geht',
        " es?</prosody> Gut",
        '. <break time="1s"/>',
        "Ende</speak>",
    ]
    out = [_seen(stream.feed(p)) for p in parts] + [_seen(stream.finish())]
    assert out == [
        [],
        [("Hallo Welt.", None, 1.0, "german")],
        [],
        [],
        [("Wie", None, 1.0, "german"), ("geht es?", None, 1.25, "german"), ("Gut.", None, 1.0, "german")],
        [],
        [("Ende", 1.0, 1.0, "german")],
    ]


def test_shaper_pause_and_rate():
    shaper = PcmShaper()
    assert len(b"".join(shaper.sentence(pause=0.5))) == 2 * 12000  # a leading break is silence too
    shaper.feed(b"\0\0" * 2400)
    shaper.sentence(rate=1.5)
    assert shaper.speed == 1.5 and shaper.stretcher is not None
    shaper.sentence()  # back to the reply's speed
    assert shaper.speed == 1.0 and shaper.stretcher is None


# -- both front doors, the real server in-process --------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tmp_path_factory):
    engine = load_test_engine(str(tiny_custom_voice))
    settings = Settings(
        uri=f"tcp://127.0.0.1:{free_port()}",
        model=str(tiny_custom_voice),
        data_dir=tmp_path_factory.mktemp("ssml-data"),
        http_host="127.0.0.1",
        http_port=free_port(),
        seed=1,
    )
    srv = ServerThread(settings, engine, http=True)
    yield srv
    srv.close()
    engine.close()


PLAIN = "Hello there. Good morning."
SSML = '<speak>Hello there.<break time="500ms"/>Good morning.</speak>'
BREAK = 12000  # 500 ms at 24 kHz


async def _wyoming(port: int, events: list) -> tuple[int, list]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for event in events:
            await client.write_event(event.event())
        samples, got = 0, []
        while True:
            event = await asyncio.wait_for(client.read_event(), 120)
            if event is None:
                return samples, got
            got.append(event.type)
            if AudioChunk.is_type(event.type):
                samples += len(AudioChunk.from_event(event).audio) // 2
            if AudioStop.is_type(event.type) or Error.is_type(event.type):
                if (
                    not any(isinstance(e, SynthesizeStart) for e in events)
                    or event.type == "synthesize-stopped"
                ):
                    return samples, got
            if event.type == "synthesize-stopped":
                return samples, got


def test_wyoming_synthesize_and_stream_honour_ssml(server):
    voice = SynthesizeVoice(name="ryan@en")

    async def go():
        plain, _ = await _wyoming(server.port, [Synthesize(text=PLAIN, voice=voice)])
        ssml, _ = await _wyoming(server.port, [Synthesize(text=SSML, voice=voice, text_format="ssml")])
        as_text, _ = await _wyoming(server.port, [Synthesize(text=SSML, voice=voice)])  # no format: words
        chunks = [SSML[:9], SSML[9:30], SSML[30:41], SSML[41:]]  # cut inside tags
        streamed, types = await _wyoming(
            server.port,
            [SynthesizeStart(voice=voice, text_format="ssml")]
            + [SynthesizeChunk(text=c) for c in chunks]
            + [SynthesizeStop()],
        )
        bad, bad_types = await _wyoming(
            server.port, [Synthesize(text=PLAIN, voice=voice, text_format="html")]
        )
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await asyncio.wait_for(client.read_event(), 5))
        return plain, ssml, as_text, streamed, types, bad_types, info

    plain, ssml, as_text, streamed, types, bad_types, info = asyncio.run(go())
    assert ssml == plain + BREAK and streamed == ssml and types[-1] == "synthesize-stopped"
    assert as_text != ssml  # the tags were words before: now they are not
    assert bad_types == ["error"]
    assert "SSML" in info.tts[0].description


def test_http_speech_honours_ssml(server):
    url = f"http://127.0.0.1:{server.settings.http_port}/v1/audio/speech"

    async def post(**body):
        async with aiohttp.ClientSession() as session:
            body = {"voice": "ryan@en", "response_format": "pcm", "stream": False, **body}
            async with session.post(url, json=body) as response:
                return response.status, await response.read()

    async def coqui(**params):
        base = f"http://127.0.0.1:{server.settings.http_port}/api/tts"
        async with aiohttp.ClientSession() as session:
            params = {"speaker": "ryan@en", "audio_format": "wav", **params}
            async with session.get(base, params=params) as response:
                return response.status, await response.read()

    async def go():
        return (
            await post(input=PLAIN),
            await post(input=SSML, text_format="ssml"),
            await post(input=SSML, text_format="xml"),
            await coqui(text=PLAIN),
            await coqui(text=SSML, text_format="ssml"),
        )

    (s1, plain), (s2, ssml), (s3, bad), (s4, wav_plain), (s5, wav_ssml) = asyncio.run(go())
    assert s1 == s2 == 200 and len(ssml) == len(plain) + 2 * BREAK
    assert s3 == 400 and json.loads(bad)["error"]["param"] == "text_format"
    assert s4 == s5 == 200 and len(wav_ssml) == len(wav_plain) + 2 * BREAK  # /api/tts too
