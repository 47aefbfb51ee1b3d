"""The voice web page in headless Chromium (Debian's chromium + chromedriver, driven by selenium), reached
the way Home Assistant ingress reaches it: through a proxy that mounts the server under
/api/hassio_ingress/<token> and adds X-Ingress-Path. The page asks for the API key, lists the voices, takes
an uploaded clip with a transcript, shows the new voice, previews it and deletes it; it records a clip from
Chromium's fake microphone; and it refuses a path-traversal name. Issue 28: each voice's languages and Home
Assistant names, a speed changed from the keyboard, a style voice previewed, saved and edited, a stored clip
played, and screenshots in the light and the dark colour scheme.

Skipped (with the reason) only when no Chromium/chromedriver or no selenium is installed:
`script/install-browser` installs them. The screenshot goes to $ARTIFACTS_DIR (else the test's tmp dir),
never into the repository.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from tests.fixtures.server_process import free_port
from tests.fixtures.server_thread import ServerThread, load_test_engine
from wyoming_qwen3tts.settings import Settings

KEY = "ui-key"
PREFIX = "/api/hassio_ingress/t0ken-AbC"
TRANSCRIPT = "Hello there, this is a short test of my voice."


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) or skip."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    browser = os.environ.get("CHROME_BIN") or next(filter(None, map(shutil.which, names)), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "no Chromium/chromedriver found: run script/install-browser (or set CHROME_BIN/CHROMEDRIVER)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,1300",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking ...
        "--use-fake-device-for-media-stream",  # ... and make it a synthetic beeping source
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tiny_base, tmp_path_factory):
    engine = load_test_engine(str(tiny_custom_voice))
    settings = Settings(
        uri=f"tcp://127.0.0.1:{free_port()}",
        model=str(tiny_custom_voice),
        clone_model=str(tiny_base),
        design_model=None,
        data_dir=tmp_path_factory.mktemp("ui-data"),
        http_host="127.0.0.1",
        http_port=free_port(),
        http_api_key=KEY,
    )
    srv = ServerThread(settings, engine, http=True)
    yield srv
    srv.close()
    engine.close()


class IngressProxy:
    """What the Supervisor does for an ingress add-on: strip the prefix, add X-Ingress-Path, forward."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.seen: list[str] = []

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", PREFIX, self.forward)
        app.router.add_route("*", PREFIX + "/{tail:.*}", self.forward)
        self.session = aiohttp.ClientSession()
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def forward(self, request: web.Request) -> web.Response:
        tail = request.match_info.get("tail", "")
        self.seen.append(f"{request.method} /{tail}")
        drop = {"host", "content-length", "transfer-encoding", "connection"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
        headers["X-Ingress-Path"] = PREFIX
        async with self.session.request(
            request.method,
            f"{self.upstream}/{tail}",
            params=request.query,
            headers=headers,
            data=await request.read(),
        ) as upstream:
            keep = ("content-type", "cache-control", "content-security-policy", "www-authenticate")
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                headers={k: v for k, v in upstream.headers.items() if k.lower() in keep},
            )

    async def stop(self) -> None:
        await self.session.close()
        await self.runner.cleanup()


@pytest.fixture(scope="module")
def proxy(server):
    proxy = IngressProxy(f"http://127.0.0.1:{server.settings.http_port}")
    asyncio.run_coroutine_threadsafe(proxy.start(), server.loop).result(30)
    yield proxy
    asyncio.run_coroutine_threadsafe(proxy.stop(), server.loop).result(30)


def _clip(path: Path) -> Path:
    sr = 44100  # the page converts whatever the browser decodes to 24 kHz mono WAV
    t = np.arange(int(sr * 3.0)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 170 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, np.stack([wave, wave], axis=1).astype(np.float32), sr)
    return path


def _artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("ARTIFACTS_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_upload_preview_and_delete_a_voice_behind_ingress(browser, server, proxy, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    row = '#voices tr[data-voice="{}"]'
    # No trailing slash on purpose: only the <base> from X-Ingress-Path makes "v1/voices" resolve right.
    browser.get(f"http://127.0.0.1:{proxy.port}{PREFIX}")
    wait.until(EC.visibility_of_element_located((By.ID, "key-section")))  # the API answered 401
    browser.find_element(By.ID, "api-key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row.format("ryan"))))
    assert browser.execute_script("return document.baseURI").endswith(PREFIX + "/")

    browser.find_element(By.ID, "name").send_keys("uivoice")
    browser.find_element(By.ID, "display-name").send_keys("UI Voice")
    browser.find_element(By.CSS_SELECTOR, '#language option[value="de"]').click()
    browser.find_element(By.ID, "clip").send_keys(str(_clip(tmp_path / "my clip.wav")))
    wait.until(EC.text_to_be_present_in_element((By.ID, "message"), "Clip ready"))
    browser.find_element(By.ID, "transcript").send_keys(TRANSCRIPT)
    browser.find_element(By.ID, "save").click()
    new_row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row.format("clone:uivoice"))))
    assert "UI Voice" in new_row.text and "de" in new_row.text and TRANSCRIPT in new_row.text
    assert "Added clone:uivoice" in browser.find_element(By.ID, "message").text
    profile = server.state.catalog.library.get("uivoice")  # really in the library, as a 24 kHz WAV
    assert profile.language == "german" and profile.transcript == TRANSCRIPT and profile.mode == "icl"
    assert sf.info(str(profile.audio_path)).samplerate == 24000

    new_row.find_element(By.XPATH, ".//button[text()='Preview']").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "message"), "Preview of clone:uivoice ready"))
    assert browser.execute_script("return document.getElementById('player').src").startswith("blob:")
    shot = _artifacts(tmp_path) / "web_ui_voices.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1100, height + 120)  # the whole page in one picture
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    new_row.find_element(By.XPATH, ".//button[text()='Delete']").click()
    wait.until(EC.alert_is_present()).accept()
    wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, row.format("clone:uivoice"))))
    assert "Deleted clone:uivoice" in browser.find_element(By.ID, "message").text
    # Every call went through the ingress prefix (relative URLs), none around it.
    assert {
        "GET /",
        "GET /v1/voices",
        "POST /v1/voices",
        "POST /v1/audio/speech",
        "DELETE /v1/voices/uivoice",
    } <= set(proxy.seen)


def test_record_a_voice_in_the_browser(browser, server, proxy):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"http://127.0.0.1:{proxy.port}{PREFIX}/")  # 127.0.0.1 is a secure context: getUserMedia
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#voices tr[data-voice="ryan"]')))  # key kept
    browser.find_element(By.ID, "name").send_keys("recorded")
    browser.find_element(By.ID, "record").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "record"), "Stop recording"))
    wait.until(lambda _: float((browser.find_element(By.ID, "record-time").text or "0 s").split()[0]) >= 2)
    browser.find_element(By.ID, "record").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "message"), "Clip ready"))
    browser.find_element(By.ID, "save").click()  # no transcript: an x-vector clone, with a note saying so
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#voices tr[data-voice="clone:recorded"]')))
    assert "x-vector" in browser.find_element(By.ID, "message").text
    profile = server.state.catalog.library.get("recorded")
    assert profile.mode == "xvector" and sf.info(str(profile.audio_path)).duration >= 1.5


def test_bad_names_are_refused_in_the_page(browser, server, proxy, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"http://127.0.0.1:{proxy.port}{PREFIX}/")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#voices tr[data-voice="ryan"]')))  # key kept
    name = browser.find_element(By.ID, "name")
    name.send_keys("../evil")
    assert browser.execute_script("return arguments[0].validity.valid", name) is False
    # Past the browser's own check (a hand-made request): the server says invalid-name.
    status = browser.execute_async_script("""const done = arguments[arguments.length - 1];
        const form = new FormData(); form.append("name", "../evil"); form.append("instruct", "x");
        const headers = {Authorization: "Bearer " + localStorage.getItem("qwen3tts-api-key")};
        fetch("v1/voices", {method: "POST", body: form, headers})
          .then(async (r) => done([r.status, (await r.json()).error.code]));""")
    assert status == [400, "invalid-name"]


def _scheme(browser, scheme: str) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )


def test_names_speed_style_clip_and_both_colour_schemes(browser, server, proxy, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    library = server.state.catalog.library
    library.add_clone(
        "clipvoice", str(_clip(tmp_path / "c.wav")), TRANSCRIPT, "en", display_name="Clip Voice"
    )
    wait = WebDriverWait(browser, 60)
    row = '#voices tr[data-voice="{}"]'
    message = (By.ID, "message")
    browser.get(f"http://127.0.0.1:{proxy.port}{PREFIX}/")
    ryan = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row.format("ryan"))))
    text = ryan.get_attribute("textContent")
    assert "ryan@de" in text and "Ryan · Deutsch" in text and "en, de" in text  # what Home Assistant lists
    clone = browser.find_element(By.CSS_SELECTOR, row.format("clone:clipvoice"))
    assert "clone:clipvoice@" not in clone.get_attribute("textContent")  # its own language only
    assert "clone:clipvoice" in clone.find_element(By.CSS_SELECTOR, "ul.names").get_attribute("textContent")

    # The stored reference clip, played with the keyboard (Enter on the focused button).
    clone.find_element(By.XPATH, ".//button[text()='Play clip']").send_keys(Keys.ENTER)
    wait.until(EC.text_to_be_present_in_element(message, "Reference clip of clone:clipvoice"))
    assert browser.execute_script("return document.getElementById('player').src").startswith("blob:")

    # A speed typed and committed with Enter is stored; the preview then speaks with it.
    speed = clone.find_element(By.CSS_SELECTOR, "input.speed")
    speed.send_keys(Keys.CONTROL, "a")
    speed.send_keys("1.5", Keys.ENTER)
    wait.until(EC.text_to_be_present_in_element(message, "Speed of clone:clipvoice is now 1.5"))
    assert library.get("clipvoice").speed == 1.5

    # A style voice: previewed before it is saved, saved, shown with its speaker, edited in place.
    browser.find_element(By.CSS_SELECTOR, 'input[name=kind][value="style"]').send_keys(Keys.SPACE)
    wait.until(EC.visibility_of_element_located((By.ID, "style-fields")))
    browser.find_element(By.ID, "name").send_keys("calm")
    browser.find_element(By.CSS_SELECTOR, '#speaker option[value="ryan"]').click()
    browser.find_element(By.ID, "style-instruct").send_keys("Calm and quiet.")
    speed_field = browser.find_element(By.ID, "speed")
    speed_field.clear()
    speed_field.send_keys("0.8")
    browser.find_element(By.ID, "style-preview").click()
    wait.until(EC.text_to_be_present_in_element(message, "Preview of the new style ready"))
    browser.find_element(By.ID, "save").click()
    style = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row.format("style:calm"))))
    assert "ryan: Calm and quiet." in style.text and "style:calm@en" in style.get_attribute("textContent")
    profile = library.get("calm")
    assert (profile.kind, profile.speaker, profile.instruct, profile.speed) == (
        "style",
        "ryan",
        "Calm and quiet.",
        0.8,
    )
    style.find_element(By.XPATH, ".//button[text()='Edit']").click()
    assert browser.find_element(By.ID, "overwrite").is_selected()
    instruct = browser.find_element(By.ID, "style-instruct")
    assert instruct == browser.switch_to.active_element  # focus moved to what one edits
    instruct.send_keys(" Whispering.")
    browser.find_element(By.ID, "save").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, row.format("style:calm")), "Whispering."))
    assert library.get("calm").instruct == "Calm and quiet. Whispering."

    # Both colour schemes, each in one picture of the whole page.
    shots = _artifacts(tmp_path)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1100, height + 120)
    backgrounds = {}
    for scheme in ("light", "dark"):
        _scheme(browser, scheme)
        backgrounds[scheme] = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        browser.save_screenshot(str(shots / f"web_ui_{scheme}.png"))
        print(f"screenshot: {shots / f'web_ui_{scheme}.png'}")
    _scheme(browser, "light")
    assert backgrounds == {"light": "rgb(250, 250, 250)", "dark": "rgb(17, 17, 17)"}  # Home Assistant's dark
