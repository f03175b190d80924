"""``/embed``: the curves and the current sample, in a frame a slide gives them."""

from __future__ import annotations

import pytest

from tests.conftest import broker_and_viewer, synthetic_trainer, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOWN = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const areas = [...document.querySelectorAll('.embed > .area')].map(element => {
  const box = element.getBoundingClientRect();
  return {name: element.classList[1], width: box.width, height: box.height,
          drawn: element.querySelector('[class*="bk-"]') !== null};
});
const rows = name => {
  const source = doc.get_model_by_name(name);
  const data = source ? source.data : null;
  const step = data ? (data.get ? data.get("step") : data.step) : null;
  return step ? step.length : 0;
};
return {areas, loss: rows("loss"), sample: rows("sample"),
        named: ["header", "drawing", "play", "pause", "log_scale"].filter(
            n => doc.get_model_by_name(n) !== null),
        width: innerWidth, scrollWidth: document.documentElement.scrollWidth,
        height: innerHeight, scrollHeight: document.documentElement.scrollHeight};
"""


def test_embed_renders_the_curves_and_the_current_sample_in_a_slides_frame(
    programs, endpoint, browser
) -> None:
    broker_in, _, port, _ = broker_and_viewer(programs, endpoint)
    synthetic_trainer(programs, broker_in, "--hidden", "16", "--steps-per-second", "20")
    browser.set_window_size(960, 540)  # a reveal.js slide's default frame
    browser.get(f"http://127.0.0.1:{port}/embed")

    def filled() -> dict | None:
        page = browser.execute_script(SHOWN)
        if not page or len(page["areas"]) != 4 or not all(a["drawn"] for a in page["areas"]):
            return None
        return page if page["loss"] > 0 and page["sample"] > 0 else None

    page = wait_until(filled, 30, interval=0.3, message="the embedded page with data")
    assert [a["name"] for a in page["areas"]] == ["loss", "accuracy", "digit", "probabilities"]
    assert page["named"] == [], f"no header, pad or controls in a slide: {page['named']}"
    assert all(a["width"] > 200 and a["height"] > 150 for a in page["areas"]), page["areas"]
    assert page["scrollWidth"] <= page["width"] and page["scrollHeight"] <= page["height"] + 1
