"""report.html: self-contained (figures inline, links only to files beside it), and it
renders in a real browser (headless Chromium, where installed)."""
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from charmlp.results.cli import main
from fake_sweeps import make_sweep


class Refs(HTMLParser):
    """Every src= and href= in the page."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    sweep = make_sweep(tmp_path_factory.mktemp("report"), "pruned")
    assert main([str(sweep), "--plot"]) == 0
    return sweep / "report.html"


def test_report_references_only_files_that_exist(report):
    parser = Refs()
    parser.feed(report.read_text())
    inline = [r for r in parser.refs if r.startswith("data:image/png;base64,")]
    files = [r for r in parser.refs if not r.startswith("data:")]
    assert len(inline) == 5  # history, curves, importances, slice, contour
    assert files == ["results.csv", "best.yaml"]
    for ref in files:
        assert "://" not in ref and not ref.startswith("/")  # nothing outside the sweep dir
        assert (report.parent / ref).is_file()


def test_report_has_leaderboard_best_config_and_rerun(report):
    page = report.read_text()
    assert "<h2>Leaderboard</h2>" in page and "trial_0001" in page
    assert f"charmlp-rerun {report.parent / 'trial_0001'}" in page
    assert "Full config" in page and "optimized_metric: dev_loss" in page


def test_report_opens_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    shot = tmp_path / "report.png"
    # The page is copied away from its sweep dir: it must not need anything beside it to render.
    alone = shutil.copy(report, tmp_path / "report.html")
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,1600", f"--screenshot={shot}", f"file://{alone}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000  # a page with figures, not a blank one
