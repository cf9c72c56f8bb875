"""hydra-optuna-sweeper's own test suite, run against charmlp's sweeper.

The suite comes from the package index at test time (the sdist of the version charmlp builds
on; it is not kept in this repo). tests/upstream/ supplies what the sdist leaves out (the
example apps and two test configs) and a Hydra plugin module that registers charmlp's class
under `hydra/sweeper=optuna`, so every test that runs the plugin's sweeper runs charmlp's.
All of it must pass except the differences charmlp has by design (README: "Differences from
hydra-optuna-sweeper"), listed here with their reasons; none may be skipped."""
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
UPSTREAM = "hydra-optuna-sweeper==1.4.0rc3"
STAND_INS = Path(__file__).parent / "upstream"
ROOT = Path(__file__).resolve().parents[1]

# test id -> why charmlp differs on purpose. Keep in step with the README section.
_FAILURE_RATE = (
    "charmlp counts every failed trial (an error, a NaN or infinite result, a wrong number of "
    "values) against max_failure_rate x n_trials over the whole study, so that a resumed sweep "
    "and every worker see one tally; the plugin counts only errors raised inside one batch and "
    "lets rejected results pass. With the plugin's default max_failure_rate=0.0 the first failed "
    "trial stops a charmlp sweep (charmlp's own default is 0.25)")
BY_DESIGN: dict[str, str] = {
    "test_rejected_result_marks_trial_failed[nan]": _FAILURE_RATE,
    # A count that doesn't match the directions is a config error every trial repeats: charmlp
    # stops at the rate instead of spending the whole budget on failures.
    "test_rejected_result_marks_trial_failed[wrong-number-of-values]": _FAILURE_RATE,
}


def fetch_suite(dest: Path) -> Path:
    """The sdist's tree with the stand-ins in the places its tests load them from."""
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        UPSTREAM, "-d", str(dest)],
                       capture_output=True, text=True, timeout=300)
    sdists = list(dest.glob("*.tar.gz"))
    assert r.returncode == 0 and sdists, f"pip download {UPSTREAM} failed: {r.stderr[-1000:]}"
    with tarfile.open(sdists[0]) as tar:
        tar.extractall(dest, filter="data")
    root = next(p for p in dest.iterdir() if p.is_dir() and (p / "setup.py").exists())
    shutil.copytree(STAND_INS / "example", root / "example")
    shutil.copytree(STAND_INS / "conf", root / "tests" / "conf")
    return root


def run_suite(root: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, from the suite run in its own process."""
    report = root / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(STAND_INS / "swap"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # Its own --basetemp: pytest keeps only the last 3 temp roots, and would prune ours.
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs",
                        f"--basetemp={root / 'tmp'}", "-o", "junit_logging=all",
                        f"--junitxml={report}", "tests"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert report.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return outcomes


def test_upstream_suite_passes_with_charmlps_sweeper(tmp_path):
    outcomes = run_suite(fetch_suite(tmp_path))
    assert len(outcomes) >= 93, f"only {len(outcomes)} upstream tests ran"  # 1.4.0rc3 has 93
    not_passed = {name: kind for name, kind in outcomes.items() if kind != "passed"}
    unexpected = {n: k for n, k in not_passed.items() if n not in BY_DESIGN or k != "failed"}
    assert not unexpected, f"upstream tests not passing, and not listed as by design: {unexpected}"
    fixed = sorted(set(BY_DESIGN) - set(not_passed))
    assert not fixed, f"listed as differing by design but passing now (drop them from BY_DESIGN): {fixed}"
