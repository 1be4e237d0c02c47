"""report.html in a real browser (issue 15 item 6): headless Chromium renders the page; the DOM it
built has every section and figure, each image decoded at its size, and its screenshot is not blank
(the header's colour, the limit curve's green band and the p-value scan's CLb blue are on it).
Skipped where no Chromium is installed (CI's first pass has only Python and pip; `.ci/run`
installs the Debian package `chromium` and reruns this file)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from analysis_outputs import write_inputs

from lzflow.report import SECTIONS, build_report, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="headless Chromium not found (tried " + ", ".join(BROWSERS)
                                + "); install it with `apt-get install chromium` (Debian) to run this test")
WIDTH, HEIGHT = 1280, 9000
#: what the page must show, as RGB: the header (report.css #1f3a5f), the ±1σ band of the limit curve
#: (#55cc55, with one mass only in its legend) and the CLb curve of the p-value scan (tab:blue #1f77b4)
COLOURS = {"header": (0x1F, 0x3A, 0x5F), "1σ band": (0x55, 0xCC, 0x55), "CLb": (0x1F, 0x77, 0xB4)}
#: run in the page after load: each section's id, each image's decoded size, each caption
PROBE = """<script>window.addEventListener('load', () => {
  const out = {sections: [...document.querySelectorAll('section')].map(s => s.id),
               images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt]),
               captions: [...document.querySelectorAll('figcaption')].map(c => c.textContent),
               height: document.documentElement.scrollHeight};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=180,
                          check=True)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    inputs = write_inputs(out, studies=[("g1", "0.05")])
    page = out / "report.html"
    write_report(page, build_report(**inputs))
    # a copy with the probe script, for the DOM; the screenshot is of the page as written
    probed = out / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", probed.as_uri()).stdout
    screenshot = out / "report.png"
    _chromium(f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={screenshot}", page.as_uri())
    return inputs, dom, screenshot


def _probe(dom: str) -> dict:
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    import html

    return json.loads(html.unescape(dom[start:dom.index("</pre>", start)]))


def test_browser_builds_every_section_and_decodes_every_figure(rendered):
    inputs, dom, _ = rendered
    probe = _probe(dom)
    # every section but the observed one (this tree has no data: tests/workflow/test_observed_workflow.py)
    assert probe["sections"] == [anchor for anchor, _ in SECTIONS if anchor != "observed"]
    # limit curve, p-value scan, q̃ distributions, study overlay: all decoded by the browser at their pixel size
    from matplotlib.image import imread

    files = [inputs["curve_png"], *inputs["pvalue_pngs"], *inputs["teststat_pngs"], inputs["studies"][0]["overlay"]]
    assert len(probe["images"]) == len(files)
    for (complete, width, height, _alt), path in zip(probe["images"], files):
        h, w = imread(path).shape[:2]
        assert complete and (width, height) == (w, h), path
    assert [c.split(":")[0] for c in probe["captions"]] == ["40 GeV", "40 GeV"]
    assert probe["height"] > 3000  # the whole report, not an error page


def test_screenshot_is_not_blank(rendered):
    from matplotlib.image import imread

    _, _, screenshot = rendered
    pixels = (imread(screenshot)[:, :, :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    flat = pixels.reshape(-1, 3)
    background = np.bincount(flat @ np.array([65536, 256, 1])).argmax()
    assert np.mean((flat @ np.array([65536, 256, 1])) != background) > 0.2  # a fifth of the page is not background
    assert flat.std() > 20
    for name, rgb in COLOURS.items():
        near = np.all(np.abs(flat - np.array(rgb)) <= 3, axis=1)
        assert near.sum() > 200, f"{name} {rgb}: {near.sum()} pixels"  # one mass: the band is its legend patch
    assert np.all(np.abs(pixels[5, WIDTH // 2] - np.array(COLOURS["header"])) <= 3)  # the header is at the top
