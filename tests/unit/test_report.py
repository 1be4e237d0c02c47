"""The report page (issue 15 item 6), without a browser: rendered from the package's Jinja2
templates with autoescaping, every section and figure present, values with '<' escaped, toy
counts, configured precision, NEST units, the PCL sentence, and the templates shipped as package
data. Inputs are real stage outputs (tests/unit/analysis_outputs.py)."""

from __future__ import annotations

import base64
import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from analysis_outputs import REPO, merged_limit, write_inputs

from lzflow.report import (DERIVED_DISPLAY, NEST_DISPLAY, SECTIONS, build_report, count_range, exact,
                           pcl_above_median)

PNG = b"\x89PNG\r\n\x1a\n"
#: every tag the templates write; anything else in a page came from a value that was not escaped
TEMPLATE_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "div", "nav", "a",
                 "main", "section", "p", "img", "table", "tr", "th", "td", "em", "strong", "sub", "ul", "li",
                 "figure", "figcaption", "details", "summary", "pre", "code", "span"}


class Page(HTMLParser):
    """Sections, navigation links, images, figure captions, tags and table rows of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.sections, self.links, self.images, self.captions, self.tags = [], [], [], [], set()
        self.h2, self.rows = [], []
        self._in: list[str] = []
        self._row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "img":
            self.images.append(a)
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("")
        if tag not in ("img", "meta"):
            self._in.append(tag)

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if "figcaption" in self._in:
            self.captions.append(data)
        if self._in and self._in[-1] == "h2":
            self.h2.append(data)
        if self._row is not None and self._row and any(t in ("td", "th") for t in self._in):
            self._row[-1] += data


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("report"), studies=[("g1", "0.05")])


@pytest.fixture(scope="module")
def page(inputs):
    return build_report(**inputs, title="lzflow test")


def test_every_section_and_figure_is_present(inputs, page):
    parsed = Page(page)
    shown = [anchor for anchor, _ in SECTIONS if anchor != "observed"]  # no observed data here (test_observed_workflow)
    assert parsed.sections == shown
    assert parsed.links == [f"#{anchor}" for anchor in shown]
    assert parsed.h2 == ["Limit curve", "Against the published reference", "Per mass: p-value scans and test statistics",
                         "Nuisance parameters: impact on the median expected limit", "Studies", "Fit errors",
                         "Provenance"]
    # the curve, the p-value scan and the q̃ distributions of the mass, the study overlay: each file, byte for byte
    files = [inputs["curve_png"], *inputs["pvalue_pngs"], *inputs["teststat_pngs"], inputs["studies"][0]["overlay"]]
    assert len(parsed.images) == len(files) == 4
    for img, path in zip(parsed.images, files):
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data.startswith(PNG) and data == Path(path).read_bytes()
    assert any(c.startswith("40 GeV: CLs+b, CLb and CLs vs μ") for c in parsed.captions)
    assert any(c.startswith("40 GeV: q̃ of S+B and B-only toys") for c in parsed.captions)
    assert 'src="http' not in page and "<link" not in page and "<script" not in page  # self-contained


def test_curve_table_shows_the_csv_numbers(inputs, page):
    """Every number of the curve table is the CSV's at 4 significant digits (as before the templates)."""
    import csv

    row = next(csv.DictReader(Path(inputs["curve_csv"]).read_text().splitlines()))
    table = next(r for r in Page(page).rows if r[0] == "40")
    columns = ["sigma_median_cm2", "sigma_m2_cm2", "sigma_m1_cm2", "sigma_p1_cm2", "sigma_p2_cm2", "sigma_pcl_cm2",
               "sigma_asymptotic_median_cm2", "sigma_discovery_3sigma_cm2"]
    expected = [f"{float(row[c]):.4g}" if row[c] else f"≤ {float(row['sigma_m2_bound'][2:]):.4g}" for c in columns]
    assert table[1:] == expected


def test_values_with_markup_are_escaped(tmp_path, inputs):
    evil = "<script>alert('x')</script>&<b>"

    def edit(doc):
        doc["warnings"] = [f"q < 0 {evil}"]
        doc["notes"] = [evil]

    changed = write_inputs(tmp_path, doc=edit, detector_name=evil, studies=[(evil, evil)], figures=inputs)
    changed["config"] = {**changed["config"], "tag": evil}
    page = build_report(**changed, title=evil)
    parsed = Page(page)
    assert parsed.tags <= TEMPLATE_TAGS, parsed.tags - TEMPLATE_TAGS  # no <script>, no <b>
    assert evil not in page and "q < 0" not in page
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&lt;b&gt;"
    # title, heading, detector, warning, note, study heading/variant/figure alt text, configuration JSON
    assert page.count(escaped) >= 8, page.count(escaped)
    assert "q &lt; 0 " + escaped in page


def test_toy_counts_show_one_number_when_equal(tmp_path, inputs, page):
    assert count_range([300, 300]) == "300" and count_range([280, 300, 290]) == "280–300" and count_range([]) == "0"
    assert "150 S+B toys per POI" in page and "150–150" not in page

    def uneven(doc):
        doc["toys"]["sb_per_poi"][0] = 140

    assert "140–150 S+B toys per POI" in build_report(**write_inputs(tmp_path, doc=uneven, figures=inputs))


def test_nest_parameters_at_configured_precision_with_units(inputs, page):
    from lzflow.detector import NEST_PARAMETERS

    rows = {r[0]: r for r in Page(page).rows if len(r) == 4}
    assert rows["g1"][1:3] == ["0.118735", "phd / photon"]  # not 0.1187
    assert rows["anode"][1:3] == ["1468.7432", "mm"] and rows["eLife_us"][1:3] == ["850", "µs"]
    assert rows["noiseBaseline"][1] == "0, 0, 0, 0"
    assert set(NEST_PARAMETERS) <= set(NEST_DISPLAY) and set(NEST_PARAMETERS) <= set(rows)
    for name, spec in NEST_PARAMETERS.items():  # the units lzflow converts to, as the report shows them
        if spec.unit is not None:
            assert NEST_DISPLAY[name][0] == {"us": "µs"}.get(spec.unit, spec.unit), name
    derived = json.loads(Path(inputs["detector_json"]).read_text())["derived"]
    assert set(derived) == set(DERIVED_DISPLAY)  # every derived quantity has its unit
    assert [r[2] for r in Page(page).rows if r[0] in ("g2", "fiducial volume")] == ["cm³", "phd / e⁻"]
    assert exact(0.1 + 0.2) == "0.30000000000000004" and exact(177.0) == "177" and exact([1.5, 2.0]) == "1.5, 2"


def test_pcl_above_the_median_is_explained(tmp_path, inputs, page):
    """PCL = max(μ_up, μ_min): the floor μ_min (the Φ(−1) quantile) lies below the median, so a PCL
    above the median is μ_up on the Asimov data, which more than half of the B-only toys out-q."""
    doc = merged_limit()[0]
    lim = doc["limits"]["CLs+b"]
    median, pcl = lim["expected_mu"]["0"], lim["pcl_mu"]
    assert pcl > median and lim["pcl_floor_mu"] < median and pcl == lim["observed_mu"]
    note = pcl_above_median(doc)
    assert note["excess"] == pytest.approx(pcl / median - 1) and not note["floored"] and note["floor_below_median"]
    mu, clb = np.asarray(doc["poi_grid"]), np.asarray(doc["pvalues"]["clb"])
    j = np.searchsorted(mu, median)
    assert note["clb_at_median"] == pytest.approx(clb[j - 1] + (clb[j] - clb[j - 1]) * (median - mu[j - 1]) / (mu[j] - mu[j - 1]))
    assert note["clb_at_median"] > 0.5  # the Asimov data exclude less than the median experiment
    assert "Why the PCL lies above the toy median" in page
    assert f"40 GeV: PCL {100 * note['excess']:.0f} % above the toy median" in page
    assert f"CLb of the Asimov data at the median's μ: {note['clb_at_median']:.3f}" in page

    def at_median(doc):
        doc["limits"]["CLs+b"]["pcl_mu"] = doc["limits"]["CLs+b"]["expected_mu"]["0"]

    assert "Why the PCL" not in build_report(**write_inputs(tmp_path, doc=at_median, figures=inputs))


def test_templates_are_package_data():
    """pyproject's package-data globs cover every template file, so `pip install .` ships them
    (the slow test below builds the wheel)."""
    import fnmatch

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lzflow"]
    templates = sorted(p.relative_to(REPO / "src" / "lzflow").as_posix()
                       for p in (REPO / "src" / "lzflow" / "templates").iterdir())
    assert "templates/report.html.j2" in templates
    assert all(any(fnmatch.fnmatch(t, g) for g in globs) for t in templates), templates


@pytest.mark.slow
def test_wheel_ships_the_templates(tmp_path):
    """A wheel of the repository (pip's build isolation: setuptools from PyPI) holds every template,
    and lzflow installed from it (not editable) loads them from the installed package."""
    import subprocess
    import sys
    import zipfile

    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(REPO)], check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("lzflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (REPO / "src" / "lzflow" / "templates").iterdir())
    assert {f"lzflow/templates/{name}" for name in shipped} <= names
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(tmp_path / "site"), str(wheel)], check=True,
                   capture_output=True)
    code = ("import lzflow.report as r; env = r.environment(); "
            "print(r.__file__); print(sorted(env.list_templates())); [env.get_template(t) for t in env.list_templates()]")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    assert out[0] == str(tmp_path / "site" / "lzflow" / "report.py")
    assert out[1] == str(shipped)


def test_missing_input_is_an_error(inputs):
    with pytest.raises(FileNotFoundError, match="missing"):
        build_report(**{**inputs, "errors_json": Path("/nonexistent/fit_errors.json")})
    assert re.search(r"<em>≤ [0-9.e+-]+</em>", build_report(**inputs)) is not None  # a bound stays a bound


def test_impacts_show_the_median_without_shape_systematics(tmp_path, inputs, page):
    """With shape systematics, each mass's impacts say the median without them and how much wider
    it is with them (lzflow.impacts: median_sigma_cm2_without_shape_systematics); without, nothing."""
    import json

    assert "Without the shape systematics" not in page
    new = write_inputs(tmp_path, figures=inputs)
    path = new["impact_paths"][0]
    doc = json.loads(open(path).read())
    doc["median_sigma_cm2_without_shape_systematics"] = doc["median_sigma_cm2_profiled"] / 1.07
    doc["shape_systematics_impact"] = 0.07
    open(path, "w").write(json.dumps(doc))
    text = build_report(**new)
    assert "Without the shape systematics (rates still profiled)" in text and "+7.0 % wider" in text
