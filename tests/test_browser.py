"""The README's demo in a real headless Chromium: the page comes up and visibly learns."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from protocol.tokens import TOKEN_ENV
from tests.conftest import REPO, wait_until
from tests.documents import FIND_BUTTON

pytestmark = pytest.mark.browser

SCREENSHOTS = {
    "light": REPO / "docs" / "dashboard.png",
    "dark": REPO / "docs" / "dashboard-dark.png",
    "phone": REPO / "docs" / "dashboard-phone.png",
}
"""The README's pictures, taken on purpose by ``scripts/screenshots --readme``."""
TOKEN = "presenter-secret-for-tests"

READ_STATE = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const column = (name, key) => {
  const source = doc.get_model_by_name(name);
  if (!source) return null;
  const data = source.data;
  const values = data instanceof Map ? data.get(key) : data[key];
  return values ? Array.from(values) : null;
};
return {
  loss: (column('loss', 'step') || []).length,
  accuracy: (column('accuracy', 'step') || []).length,
  sample: column('sample', 'index'),
  probabilities: column('probabilities', 'probability'),
};
"""


def page_state(browser) -> dict | None:
    return browser.execute_script(READ_STATE)


def test_demo_shows_curves_growing_and_predictions_changing(programs, browser, tmp_path):
    port = free_tcp_port()
    launched = time.monotonic()
    demo = programs.start("demo", "--port", str(port), env={"MNIST_LIVE_CACHE": str(tmp_path)})
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: "dashboard at" in programs.output(demo), 10, message="the viewer")
    except AssertionError as exc:  # say what the demo said, not only that it was slow
        raise AssertionError(f"{exc}; the demo printed:\n{programs.output(demo)}") from None
    browser.get(url)
    first = wait_until(lambda: _with_data(page_state(browser)), 10, message="first data")
    later = wait_until(lambda: _changed(first, page_state(browser)), 10, message="live updates")
    elapsed = time.monotonic() - launched
    print(f"launch to live updates in the browser: {elapsed:.1f} s")
    assert later["loss"] > first["loss"] and later["accuracy"] > first["accuracy"]
    assert later["sample"] != first["sample"]
    assert later["probabilities"] != first["probabilities"]
    assert abs(sum(later["probabilities"]) - 1) < 1e-3
    assert elapsed < 10, f"the page took {elapsed:.1f} s from launch to show learning"
    assert _only_local_requests(browser, port)
    assert programs.stop(demo, signal.SIGINT) == 0
    assert "Traceback" not in programs.output(demo)
    assert "refused a browser" not in programs.output(demo), "a real page's changes all pass"


def _with_data(state: dict | None) -> dict | None:
    if state and state["loss"] and state["accuracy"] and state["sample"]:
        return state
    return None


def _changed(first: dict, now: dict | None) -> dict | None:
    if (
        now
        and all(now[k] > first[k] for k in ("loss", "accuracy"))
        and (now["sample"] != first["sample"])
    ):
        return now
    return None


def _only_local_requests(browser, port: int) -> bool:
    """No CDN, no fonts from elsewhere: every request the page made stayed on this machine."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    network = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")]
    outside = [u for u in network if urlsplit(u).hostname != "127.0.0.1"]
    assert not outside, f"the page fetched from elsewhere: {outside[:5]}"
    return any(urlsplit(u).port == port for u in network)


def test_screenshots_are_where_the_readme_says() -> None:
    readme = (REPO / "README.md").read_text()
    for picture in SCREENSHOTS.values():
        assert picture.relative_to(REPO).as_posix() in readme
        assert picture.exists(), "run the browser tests once to take it"


READ_HEADER = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const header = doc.get_model_by_name('header');
const loss = doc.get_model_by_name('loss');
if (!header || !loss) return null;
const steps = loss.data instanceof Map ? loss.data.get('step') : loss.data['step'];
return {
  text: header.text.replace(/<[^>]*>/g, ' ').toLowerCase(),
  step: steps && steps.length ? Math.max(...Array.from(steps)) : -1,
  has_pause: doc.get_model_by_name('pause') !== null,
};
"""


def test_presenter_pauses_and_resumes_while_the_audience_watches(programs, browser, tmp_path):
    broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    port = free_tcp_port()
    secret = {TOKEN_ENV: TOKEN}  # both find the token in the environment, as SECURITY.md says
    programs.start("broker", "--in", broker_in, "--out", broker_out, env=secret)
    viewer = programs.start("view", "--connect", broker_out, "--port", str(port), env=secret)
    wait_until(lambda: "dashboard at" in programs.output(viewer), 15, message="the viewer")
    trainer = programs.start(
        "train",
        "--connect",
        broker_in,
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "2000",
        "--epochs",
        "50",
        "--steps-per-second",
        "25",
        "--quiet",
    )
    url = f"http://127.0.0.1:{port}/"

    browser.get(url)
    audience = wait_until(lambda: _training(browser), 20, message="the audience page training")
    assert not audience["has_pause"], "an audience page must not get presenter controls"
    assert browser.execute_script(FIND_BUTTON, "Pause") is None
    _screenshot(browser, "light", tmp_path)
    browser.get(url + "?theme=dark")
    wait_until(lambda: _training(browser), 20, message="the dark page training")
    _screenshot(browser, "dark", tmp_path)

    browser.get(f"{url}?token={TOKEN}")
    wait_until(lambda: _training(browser), 20, message="the presenter page training")
    pause = wait_until(lambda: browser.execute_script(FIND_BUTTON, "Pause"), 10, message="Pause")
    pause.click()
    paused = wait_until(lambda: _status(browser, "paused"), 10, message="status paused")
    time.sleep(1.5)  # at 25 steps/s a running trainer would move ~35 steps
    still = _header(browser)
    assert still["step"] == paused["step"], "the step count moved while paused"

    browser.execute_script(FIND_BUTTON, "Resume").click()
    resumed = wait_until(lambda: _status(browser, "training"), 10, message="status training")
    moving = wait_until(
        lambda: (h := _header(browser)) and h["step"] > resumed["step"] + 10 and h,
        10,
        message="the step count to continue",
    )
    assert moving["step"] > still["step"]
    assert _only_local_requests(browser, port)
    for process in (trainer, viewer):
        programs.stop(process, signal.SIGINT)
    assert "Traceback" not in programs.output(viewer)
    assert "refused a browser" not in programs.output(viewer), "a real page's changes all pass"


def _header(browser) -> dict | None:
    return browser.execute_script(READ_HEADER)


def _status(browser, word: str) -> dict | None:
    header = _header(browser)
    return header if header and word in header["text"] and header["step"] >= 0 else None


def _training(browser) -> dict | None:
    return _status(browser, "training")


def _screenshot(browser, theme: str, tmp_path: Path) -> None:
    """The whole dashboard as a picture, in the test's own folder (a test never writes
    tracked files: ``scripts/screenshots --readme`` retakes the README's)."""
    browser.set_window_size(1400, 1300)  # the whole dashboard, not just the first screen
    time.sleep(2)  # let the curves grow a little for the picture
    picture = tmp_path / SCREENSHOTS[theme].name
    assert browser.save_screenshot(str(picture)), f"could not save {picture}"
    assert picture.stat().st_size > 20_000, "a picture of a page, not of a blank one"
