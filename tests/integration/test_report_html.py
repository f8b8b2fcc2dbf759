"""`moments report --html` rendered by a real headless browser (Debian's chromium): the charts
must really be drawn (bars and CDF lines with a size after layout), and a screenshot must show
them, not a blank page. Also README.md's worked example ("Measuring a trigger"), run as shown: its
printed table must be the one the README quotes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from moments_testing import docs
from moments_testing.docs import ROOT
from tests.unit.report.conftest import simulate

pytestmark = pytest.mark.integration
MOMENTS = ROOT / ".venv" / "bin" / "moments"
README = "README.md"
EXAMPLE = "measure-trigger"
ARMS = ("control", "a", "b")
# Measured inside the page once laid out: a drawn bar has a box, a drawn line a length.
PROBE = """<script>
const size = (el) => { const b = el.getBBox(); return [b.width, b.height]; };
const found = {};
for (const arm of %s) {
  const bar = document.querySelector(`[id="rate-bar-${arm}"] path`);
  const line = document.querySelector(`[id="time-to-goal-${arm}"] path`);
  found[arm] = {bar: bar ? size(bar) : null, line: line ? line.getTotalLength() : null,
                points: line ? line.getAttribute("d").split(/[ML]/).length - 1 : 0};
}
const pre = document.createElement("pre");
pre.id = "probe";
pre.textContent = JSON.stringify(found);
document.body.appendChild(pre);
</script></body>"""


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed: `make setup` installs it as root (apt-get)")
    return path


def browse(chromium: str, url: str, tmp_path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--window-size=1200,1000", f"--user-data-dir={tmp_path / 'profile'}",
         *flags, url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    outcomes = simulate({"control": 0.10, "a": 0.15, "b": 0.10}, 3_000, seed=4)
    source = directory / "outcomes.jsonl"
    source.write_text("".join(o.model_dump_json() + "\n" for o in outcomes))
    html = directory / "report.html"
    result = subprocess.run(
        [MOMENTS, "report", "--outcomes", source, "--html", html],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return html


def test_the_charts_are_drawn_in_the_browser(chromium, page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE % json.dumps(ARMS), 1))
    dom = browse(chromium, probed.as_uri(), tmp_path, "--dump-dom").stdout
    found = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1))
    for arm in ARMS:
        assert found[arm]["bar"] and found[arm]["line"], (arm, found[arm])
        width, height = found[arm]["bar"]
        assert width > 10 and height > 10, (arm, found[arm])
        assert found[arm]["line"] > 100 and found[arm]["points"] > 50, (arm, found[arm])
    heights = {arm: found[arm]["bar"][1] for arm in ARMS}
    assert heights["a"] > heights["control"], "the treated arm converts more: a taller bar"


def test_a_screenshot_shows_the_charts(chromium, page, tmp_path):
    shot = tmp_path / "shot.png"
    browse(chromium, page.as_uri(), tmp_path, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1000, 1200)
    not_white = (pixels < 245).any(axis=2).mean()
    assert 0.02 < not_white < 0.9, f"{not_white:.1%} of the screenshot is drawn"
    for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)):  # C0, C1, C2
        close = (np.abs(pixels - np.array(colour)).sum(axis=2) < 30).sum()
        assert close > 2_000, f"the bar in {colour} covers only {close} pixels"


def test_the_readme_example_prints_the_table_it_quotes(tmp_path):
    shown = docs.block(README, EXAMPLE)
    [quoted] = [b for b in docs.blocks(README) if b.line > shown.line and b.lang == "text"][:1]
    script = "\n".join(shown.commands()).replace("/tmp/", f"{tmp_path}/")
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip().endswith(quoted.text.strip()), result.stdout[-2000:]
    assert (tmp_path / "report.html").read_text().count("<svg") == 2
