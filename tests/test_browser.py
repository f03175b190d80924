"""The README's demo in a real headless Chromium: the page comes up and visibly learns."""

from __future__ import annotations

import json
import signal
import time
from urllib.parse import urlsplit

import pytest

from protocol.endpoints import free_tcp_port
from tests.conftest import REPO, wait_until

pytestmark = pytest.mark.browser

SCREENSHOT = REPO / "docs" / "dashboard.png"

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
    wait_until(lambda: "dashboard at" in programs.output(demo), 10, message="the viewer")
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

    time.sleep(2)  # let the curves grow a little for the picture
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert _only_local_requests(browser, port)
    assert programs.stop(demo, signal.SIGINT) == 0
    assert "Traceback" not in programs.output(demo)


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


def test_screenshot_is_where_the_readme_says() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"]({SCREENSHOT.relative_to(REPO).as_posix()})" in readme
    assert SCREENSHOT.exists(), "run the browser test once to take it"
