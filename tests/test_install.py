"""A wheel install (not -e) carries conf/ and sweeps/: .ci/wheel.sh builds the wheel, installs
it into a fresh venv and runs the README's commands from an empty directory."""
import os
import subprocess

import pytest

from charmlp.configs import conf_dir
from conftest import ROOT


def test_a_source_checkout_reads_the_top_level_configs():
    assert conf_dir() == str(ROOT / "conf")
    assert (ROOT / "conf" / "sweep" / "smoke.yaml").is_file()  # conf/sweep links to sweeps/


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CHARMLP_WHEEL_CHECKED") == "1",
                    reason=".ci/run ran .ci/wheel.sh, and it passed, before this test run")
def test_wheel_in_a_fresh_venv_runs_sweep_results_and_rerun_from_an_empty_dir():
    r = subprocess.run(["bash", str(ROOT / ".ci" / "wheel.sh")], capture_output=True, text=True,
                       timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "wheel.sh: all passed" in out
    assert "rerun of" in out and "2 trials (2 COMPLETE)" in out
