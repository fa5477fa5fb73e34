"""The web app in a real headless browser (Debian's Chromium through Selenium): pick the bundled
example, see its landmarks, generate, and play the video; a missing input is a message, not a trace."""
from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    from ventriloquist.demo import DEMO_SPEECH, demo_face
    from ventriloquist.serve.ui import build
    port = _free_port()
    app = build()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
               allowed_paths=[str(demo_face().parent), str(DEMO_SPEECH.parent)])
    yield f"http://127.0.0.1:{port}"
    app.close()


def chromium(tmp_path: Path, *flags: str):
    """Debian's headless Chromium under Selenium, with ``flags`` beside the common ones (a fresh profile in
    ``tmp_path``); skipped where it is not installed, failed in CI."""
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed; run scripts/setup.sh")
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chrome'}", *flags):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, "--disable-quic", "--window-size=1400,1700", "--autoplay-policy=no-user-gesture-required")
    yield driver
    driver.quit()


def _until(check, timeout: float = 120.0, every: float = 0.25):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s")


def _click(browser, element) -> None:
    """Click as a user would, after scrolling the element into view (a taller page hides it behind others)."""
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    time.sleep(0.2)
    element.click()


def test_the_page_renders_the_bundled_example(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    browser.get(app_url)
    _until(lambda: browser.find_elements(By.ID, "generate"))
    # a missing input is a clear message in the page
    _click(browser, browser.find_element(By.ID, "generate"))
    _until(lambda: "add a face photo or a video to dub first" in browser.page_source, timeout=30)
    # the bundled example fills the face and the speech; the landmarks found are shown before rendering
    example = _until(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, "#examples button, #examples tr td")
                              if e.is_displayed()])
    _click(browser, example[0])
    _until(lambda: browser.find_elements(By.CSS_SELECTOR, "#landmarks img"))
    # the group-photo field starts empty (the largest face, as the CLI); a face it does not have is one
    # message in the page's own words, naming the photo, not a server path or a CLI flag, and it stays
    which = browser.find_element(By.CSS_SELECTOR, "#which textarea, #which input")
    assert which.get_attribute("value") == ""
    which.send_keys("5")
    _click(browser, browser.find_element(By.ID, "generate"))
    def toasts() -> list[str]:
        return [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".toast-message-text")]
    _until(lambda: any("face in a group photo must be 0-0" in t for t in toasts()), timeout=60)
    assert all("--" not in t and "/tmp/" not in t for t in toasts()), toasts()
    assert any(t.startswith("astronaut.png shows 1 face") for t in toasts())
    assert sum("face in a group photo must be 0-0" in t for t in toasts()) == 1       # said once
    assert "face in a group photo must be 0-0" in browser.find_element(By.ID, "landmarks").text
    time.sleep(11)                                   # a toast that closes itself is gone after 10 s
    assert any("face in a group photo must be 0-0" in t for t in toasts())
    which.clear()
    which.send_keys(" ")
    _click(browser, browser.find_element(By.ID, "generate"))
    _until(lambda: browser.find_elements(By.CSS_SELECTOR, "#video video"), timeout=180)
    assert "astronaut_grid_s1_demo.mp4" in browser.find_element(By.CSS_SELECTOR, "#video video").get_attribute("src")
    duration = _until(lambda: browser.execute_script(
        "const v = document.querySelector('#video video'); return v && v.readyState >= 1 ? v.duration : 0;"))
    assert duration > 1.0
    _until(lambda: browser.find_elements(By.CSS_SELECTOR, "#emotions img"))
    shot = tmp_path / "app.png"
    browser.execute_script("window.scrollTo(0, 0);")
    time.sleep(0.5)
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("VENTRILOQUIST_SCREENSHOT"):            # how docs/app.png is refreshed
        shutil.copy(shot, Path(os.environ["VENTRILOQUIST_SCREENSHOT"]))
