"""charmlp-rerun: pins what actually ran (engine, device), warns when the data changed, and takes
options and overrides in any order."""
import json
import shutil

import pytest
import yaml

from charmlp import rerun
from conftest import TINY, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def original(tmp_path_factory, names_file):
    """A run with trainer.engine=auto, on its own copy of the data (one test edits it)."""
    tmp = tmp_path_factory.mktemp("rerun")
    data = tmp / "names.txt"
    shutil.copy(names_file, data)
    run = tmp / "run"
    r = run_cli("charmlp-train", f"data.path={data}", *TINY, f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr
    return run, data


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_metrics_record_the_data_files_sha256(original):
    import hashlib
    run, data = original
    assert metrics(run)["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_rerun_pins_engine_and_device_with_overrides_before_the_path(original, tmp_path):
    run, _ = original
    out = tmp_path / "again"
    r = run_cli("charmlp-rerun", "trainer.history_interval=25", str(run), "--out", str(out))
    assert r.returncode == 0, r.stderr
    old, new = metrics(run), metrics(out)
    overrides = yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())
    assert f"trainer.engine={old['engine']}" in overrides and f"trainer.device={old['device']}" in overrides
    assert overrides[-1] == "trainer.history_interval=25"  # the user's own come last, and win
    assert (new["engine"], new["device"]) == (old["engine"], old["device"])
    assert (new["train_loss"], new["dev_loss"]) == (old["train_loss"], old["dev_loss"])
    assert "warning" not in r.stderr


def test_options_and_overrides_mix_and_changed_data_is_warned_about(original, tmp_path):
    run, data = original
    data.write_text(data.read_text() + "\nzyxwv\n")  # the data file changed since the run
    out = tmp_path / "changed"
    r = run_cli("charmlp-rerun", "--out", str(out), str(run), "trainer.steps=100", "--test",
                "trainer.eval_interval=50")
    assert r.returncode == 0, r.stderr
    assert metrics(out)["steps"] == 100 and "test_loss" in metrics(out)
    warnings = [line for line in r.stderr.splitlines() if line.startswith("charmlp-rerun: warning:")]
    assert len(warnings) == 1 and "data file differs" in warnings[0], r.stderr


def test_no_path_among_the_arguments_is_one_line(capsys):
    assert rerun.main(["trainer.steps=5", "--best"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["charmlp-rerun: error: no run, trial or sweep directory given; "
                   "fix: charmlp-rerun PATH [overrides]"]


@pytest.mark.parametrize("taken", ["metrics.json", "model.pt"])
def test_out_dir_holding_a_run_is_refused_and_left_alone(original, tmp_path, capsys, taken):
    run, _ = original
    out = tmp_path / "done"
    out.mkdir()
    shutil.copy(run / taken, out / taken)
    before = (out / taken).read_bytes()
    assert rerun.main([str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out} already holds a run ({taken})" in err[0] and "another --out" in err[0]
    assert (out / taken).read_bytes() == before and sorted(p.name for p in out.iterdir()) == [taken]


def test_absent_or_empty_out_dir_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    rerun.check_out(tmp_path / "empty")
    rerun.check_out(tmp_path / "absent")


@pytest.mark.parametrize("second", ["other_run", "trainer.steps"])
def test_a_second_path_is_one_line(tmp_path, capsys, second):
    assert rerun.main([str(tmp_path), second, "trainer.steps=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"more than one path given ({tmp_path}, {second})" in err[0]
    assert "key=value overrides" in err[0]


def test_rerun_of_a_pruned_trial_does_not_compare_its_losses(original, tmp_path):
    run, _ = original
    pruned = tmp_path / "trial_0003"
    shutil.copytree(run, pruned)
    m = metrics(pruned)
    m.update(status="pruned", steps_done=100, dev_loss=2.549137)
    (pruned / "metrics.json").write_text(json.dumps(m))
    r = run_cli("charmlp-rerun", str(pruned), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert "original was pruned at step 100 of 200 (dev 2.549137); not comparable" in r.stdout
    assert "(original:" not in r.stdout
    full = rerun.comparison(metrics(run), metrics(tmp_path / "again"))  # a finished one still is
    assert all("(original: " in line for line in full) and len(full) == 2
