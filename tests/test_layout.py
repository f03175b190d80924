"""The page fits every screen it will be shown on, in a real headless Chromium.

A paced run feeds a real viewer; the page is taken at a phone's, a laptop's, a 1080p and a
4K viewport, light and dark, and ``?large=1`` at 1080p. From the DOM: no horizontal
scrollbar; every panel's box inside the viewport's width; at 1080p and 4K every panel inside
its height too (the whole dashboard on one screen); no plot title cut off and no button label
wider than its button; the page's, the plots', the in-plot labels' and the buttons' text at 4K
no smaller, relative to the width, than at 1080p. Each screenshot is kept in
``build/test-screenshots`` (ignored by git; CI keeps the folder as an artefact).
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import REPO, broker_and_viewer, synthetic_trainer, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SIZES = {
    "phone": (390, 844),
    "tablet": (1024, 768),  # between the phone's column and the laptop's grid
    "laptop": (1280, 720),
    "1080p": (1920, 1080),
    "4k": (3840, 2160),
}
ONE_SCREEN = ("1080p", "4k")
SHOTS = REPO / "build" / "test-screenshots"
AREAS = (
    "header",
    "loss",
    "accuracy",
    "digit",
    "probabilities",
    "weights",
    "confusion",
    "per_class",
    "mistakes",
    "draw",
    "reading",
)

MEASURE = """
// Each area's box is the Bokeh view drawn in the template's cell (the element with a bk-
// class, whose shadow root holds the plot), not the cell itself: a plot wider than its cell
// shows here.
const areas = [...document.querySelectorAll('.dashboard > .area')].map(element => {
  const view = element.querySelector('[class*="bk-"]');
  const box = (view || element).getBoundingClientRect();
  const cell = element.getBoundingClientRect();
  return {name: element.classList[1], left: box.left, right: box.right, top: box.top,
          bottom: box.bottom, width: box.width, height: box.height, drawn: view !== null,
          inside: box.left >= cell.left - 1 && box.right <= cell.right + 1};
});
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
const models = doc ? [...doc.all_models] : [];
const px = (model, prop) => {
  const value = model && model[prop];
  return model ? parseFloat(typeof value === "string" ? value : value.value) : null;
};
const titles = models.filter(m => m.constructor.__name__ === "Title");
const title = titles[0];
const glyph = models.find(m => m.constructor.__name__ === "Text");
// A title is cut off when its text needs more room than its plot laid out for it.
const cut = [];
for (const model of titles.filter(m => m.text)) {
  for (const view of Bokeh.index.find(model)) {
    const shown = !view.parent || view.parent.model.visible !== false;  // the log-scale plot
    if (!shown || !view.layout || !view.get_size) continue;
    const need = view.get_size(), has = view.layout.bbox;
    if (need.height > has.height + 1 || need.width > has.width + 1) {
      cut.push(`${model.text}: ${need.width}x${need.height} in ${has.width}x${has.height}`);
    }
  }
}
// The first button, inside the widgets' shadow roots.
const find = (root) => {
  for (const element of root.querySelectorAll("*")) {
    if (element.classList.contains("bk-btn")) return element;
    const inner = element.shadowRoot && find(element.shadowRoot);
    if (inner) return inner;
  }
  return null;
};
const button = find(document);
return {width: innerWidth, height: innerHeight,
        scrollWidth: document.documentElement.scrollWidth,
        scrollHeight: document.documentElement.scrollHeight,
        font: parseFloat(getComputedStyle(document.body).fontSize),
        plotFont: px(title, "text_font_size"), glyphFont: px(glyph, "text_font_size"),
        buttonFont: button ? parseFloat(getComputedStyle(button).fontSize) : null,
        buttonFits: button ? button.scrollWidth <= button.clientWidth + 1 : null,
        cut, areas, titles: titles.map(m => m.text)};
"""


LOG_SCALE = """
// The log scale toggle as a click leaves it; then the loss plot's scale and y range.
const doc = Bokeh.documents[0];
doc.get_model_by_name("log_scale").active = true;
const loss = [...doc.all_models].find(
    m => m.constructor.__name__ === "Figure" && m.title && m.title.text.startsWith("Loss"));
return {scale: loss.y_scale.constructor.__name__, start: loss.y_range.start,
        end: loss.y_range.end};
"""


def viewport(browser, width: int, height: int) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def take(browser, port: int, size: str, theme: str, large: str, waiting: bool = False) -> dict:
    """The page at ``size`` measured, after every area is drawn, and its screenshot kept."""
    width, height = SIZES[size]
    viewport(browser, width, height)
    query = f"?theme={theme}" + (f"&large={large}" if large else "")
    browser.get(f"http://127.0.0.1:{port}/{query}")

    def measured() -> dict | None:
        found = browser.execute_script(MEASURE)
        areas = found["areas"]
        ready = len(areas) == len(AREAS) and all(a["drawn"] and a["height"] > 40 for a in areas)
        return found if ready else None

    wait_until(measured, 30, interval=0.3, message=f"the page at {size}")
    time.sleep(1.5)  # a few frames, for the picture
    name = f"{'waiting-' if waiting else ''}{size}-{theme}{'-large' if large else ''}"
    assert browser.save_screenshot(str(SHOTS / f"{name}.png"))
    page = browser.execute_script(MEASURE)
    page["name"] = name
    assert [a["name"] for a in page["areas"]] == list(AREAS), name
    assert page["scrollWidth"] <= page["width"], f"{name}: a horizontal scrollbar"
    for area in page["areas"]:
        assert area["left"] >= -0.5 and area["right"] <= width + 0.5, (name, area)
        assert area["inside"], f"{name}: {area['name']} is wider than its cell"
        if size in ONE_SCREEN:
            assert area["top"] >= -0.5 and area["bottom"] <= height + 0.5, (name, area)
    if size in ONE_SCREEN:
        assert page["scrollHeight"] <= height + 1, f"{name}: the page scrolls"
    assert not page["cut"], f"{name}: titles cut off: {page['cut']}"
    assert page["buttonFits"], f"{name}: a button's label is wider than the button"
    return page


def test_the_page_fits_every_screen(programs, endpoint, browser) -> None:
    broker_in, _, port, _ = broker_and_viewer(programs, endpoint)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size in ("phone", "laptop", "1080p"):  # the words that stand in for pictures fit too
        page = take(browser, port, size, "light", "", waiting=True)
        assert any("no sample yet" in t for t in page["titles"]), page["titles"]
    synthetic_trainer(programs, broker_in, "--epochs", "20", "--steps-per-second", "20")
    cases = [(size, theme, "") for size in SIZES for theme in ("light", "dark")]
    cases.append(("1080p", "light", "1"))
    fonts: dict[str, float] = {}
    for size, theme, large in cases:
        page = take(browser, port, size, theme, large)
        if not large and theme == "light":
            for kind in ("font", "plotFont", "glyphFont", "buttonFont"):
                fonts[f"{size} {kind}"] = page[kind] / SIZES[size][0]
    take(browser, port, "1080p", "light", "")
    browser.execute_script(LOG_SCALE)
    time.sleep(0.5)  # a frame or two: the range follows the new scale
    scaled = browser.execute_script(LOG_SCALE)
    assert scaled["scale"] == "LogScale" and 0 < scaled["start"] < scaled["end"], scaled
    assert browser.save_screenshot(str(SHOTS / "1080p-light-log.png"))
    for kind in ("font", "plotFont", "glyphFont", "buttonFont"):
        at_4k, at_1080p = fonts[f"4k {kind}"], fonts[f"1080p {kind}"]
        assert at_4k >= at_1080p * 0.9, f"{kind}, of the width: {at_4k:.5f} at 4K, {at_1080p:.5f}"


def test_scripts_screenshots_takes_what_it_is_asked(tmp_path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import CHROMEDRIVER, CHROMIUM

    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "screenshots"),
            "--out",
            str(tmp_path),
            "--sizes",
            "phone",
            "--settle",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    taken = json.loads(done.stdout.strip().splitlines()[-1])["pictures"]
    assert taken == {"phone-light.png": "390x844", "phone-dark.png": "390x844"}
    for name in taken:
        assert (tmp_path / name).stat().st_size > 10_000, name
