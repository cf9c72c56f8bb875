import csv
import json
import math

import pytest
import torch

from charmlp.checkpoint import load_checkpoint
from charmlp.errors import TrialDiverged
from charmlp.trainer import train
from conftest import TINY, native_available, run_cli


def test_training_lowers_the_loss_and_writes_the_run_dir(make_cfg, tmp_path):
    m = train(make_cfg("trainer.steps=600", "trainer.eval_interval=200"), tmp_path)
    assert m["status"] == "completed" and m["steps"] == 600
    assert abs(m["init_loss"] - m["uniform_loss"]) < 0.1
    assert m["dev_loss"] < m["init_loss"] - 0.5 and m["train_loss"] < m["init_loss"] - 0.5
    assert m["best_dev_loss"] <= m["dev_loss"] and m["best_dev_step"] in (200, 400, 600)
    assert json.loads((tmp_path / "metrics.json").read_text()) == m
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert [int(r["step"]) for r in rows][-1] == 600 and len(rows) == 600 // 50
    assert [r["dev_loss"] != "" for r in rows].count(True) == 3
    assert float(rows[-1]["lr"]) == pytest.approx(0.01)  # second half of the step schedule
    model, vocab, ckpt = load_checkpoint(tmp_path)
    assert ckpt["config"]["model"]["n_embd"] == 10 and len(vocab) == model.args.vocab_size


def test_same_config_twice_gives_identical_losses(make_cfg, tmp_path):
    a = train(make_cfg("optimizer=adamw"), tmp_path / "a")
    b = train(make_cfg("optimizer=adamw"), tmp_path / "b")
    for key in ("init_loss", "train_loss", "dev_loss", "best_dev_loss"):
        assert a[key] == b[key]


def test_native_calls_of_many_steps_keep_history_rows_and_losses(make_cfg, tmp_path, monkeypatch):
    """The loop hands the native engine up to run_chunk steps per call but still writes a
    history row every history_interval steps and at each evaluation, with the same losses
    and evaluations as one call per row."""
    from charmlp.engines.native import NativeEngine
    if not native_available():
        pytest.skip("no C compiler here")
    cfg = make_cfg("trainer.engine=native", "trainer.steps=1130", "trainer.history_interval=60",
                   "trainer.eval_interval=250")
    seen, calls = {}, []
    run = NativeEngine.run
    monkeypatch.setattr(NativeEngine, "run", lambda self, start, n: calls.append(n) or run(self, start, n))
    for chunk in (1000, None):
        monkeypatch.setattr(NativeEngine, "run_chunk", chunk)
        evals = []
        m = train(cfg, tmp_path / str(chunk), on_eval=lambda step, dev: evals.append((step, dev)))
        seen[chunk] = (m["train_loss"], m["dev_loss"], evals, (tmp_path / str(chunk) / "history.csv").read_text())
        seen[chunk, "calls"], calls[:] = list(calls), []
    assert seen[1000] == seen[None]
    assert max(seen[1000, "calls"]) == 250 and max(seen[None, "calls"]) == 60
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "1000" / "history.csv"))]
    assert steps == sorted(set(range(60, 1130, 60)) | {250, 500, 750, 1000, 1130})


def test_divergence_stops_the_run_and_says_why(make_cfg, tmp_path):
    with pytest.raises(TrialDiverged, match="diverged at step"):
        train(make_cfg("optimizer.lr=1e6", "trainer.max_loss=10"), tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "diverged" and "max_loss" in m["reason"]


def test_eval_callback_sees_every_evaluation(make_cfg, tmp_path):
    seen = []
    train(make_cfg(), tmp_path, on_eval=lambda step, dev: seen.append((step, dev)))
    assert [s for s, _ in seen] == [100, 200] and all(math.isfinite(d) for _, d in seen)


def test_the_final_dev_loss_is_the_trained_models(make_cfg, tmp_path, monkeypatch):
    """The last evaluation, after the last step, is the run's dev loss (not computed again);
    a fresh evaluation of the saved model gives it too."""
    import charmlp.trainer
    from hydra.utils import instantiate
    from charmlp.engines import split_loss
    sizes, seen = [], []
    monkeypatch.setattr(charmlp.trainer, "split_loss",
                        lambda model, X, Y: sizes.append(len(X)) or split_loss(model, X, Y))
    m = train(make_cfg("trainer.steps=250", "trainer.eval_interval=100"), tmp_path,
              on_eval=lambda step, dev: seen.append((step, dev)))
    assert seen[-1] == (250, m["dev_loss"])
    assert len(sizes) == 4 and sizes.count(sizes[0]) == 3  # dev at 100, 200, 250; train once
    model, _, ckpt = load_checkpoint(tmp_path)
    data = instantiate(ckpt["config"]["data"], _execution_whitelist_=charmlp.trainer.TRUSTED)
    assert split_loss(model, data.X["dev"], data.Y["dev"]) == pytest.approx(m["dev_loss"], abs=1e-6)


def test_test_split_is_reported_only_when_asked(make_cfg, tmp_path):
    assert "test_loss" not in train(make_cfg(), tmp_path / "a")
    assert "test_loss" in train(make_cfg("report_test=true"), tmp_path / "b")


def test_cli_runs_with_overrides_and_saves_the_config(names_file, tmp_path):
    out = tmp_path / "run"
    r = run_cli("charmlp-train", f"data.path={names_file}", *TINY, "model.n_embd=6",
                "optimizer=adamw", f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr
    assert "n_embd: 6" in (out / ".hydra" / "config.yaml").read_text()
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert "step" in (out / "train.log").read_text()  # progress lines


def test_cli_cfg_job_and_help():
    r = run_cli("charmlp-train", "--cfg", "job", "model.n_hidden=7")
    assert r.returncode == 0 and "n_hidden: 7" in r.stdout and "optimizer:" in r.stdout
    r = run_cli("python", "-m", "charmlp.train", "--help")
    assert r.returncode == 0 and "model: bengio, mlp, mlp_nobn" in r.stdout


def test_cli_basic_multirun(names_file, tmp_path):
    r = run_cli("charmlp-train", "-m", f"data.path={names_file}", *TINY, "model.n_embd=4,8",
                f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    dims = [json.loads((tmp_path / str(i) / "metrics.json").read_text())["num_params"] for i in (0, 1)]
    assert dims[0] < dims[1]


@pytest.mark.parametrize("override, message", [
    ("data.path=/no/such/names.txt", "data file not found: /no/such/names.txt (fix: pass data.path="),
    ("trainer.steps=0", "trainer.steps=0 must be a positive integer"),
    ("model.n_hidden=-3", "n_hidden=-3 must be a positive integer"),
    ("trainer.engine=warp", "trainer.engine='warp' is unknown"),
])
def test_cli_bad_input_is_one_line_no_traceback(names_file, tmp_path, override, message):
    r = run_cli("charmlp-train", f"data.path={names_file}", *TINY, override, f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2
    assert message in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_cli_unknown_group_member_names_the_choices(names_file):
    r = run_cli("charmlp-train", "optimizer=lion")
    assert r.returncode != 0 and "adamw" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("schedule", ["step", "step_warmup", "constant", "constant_warmup", "cosine", "linear"])
def test_an_lr_block_is_exactly_the_per_step_lrs(schedule):
    """The native engine asks for a block of lrs per call; piecewise-constant schedules build it
    from one call per piece. Every float must equal the per-step one, across the step
    boundary, the end of warmup and blocks that start anywhere."""
    from charmlp.optim import SGD, Constant, Cosine, Linear, Step
    sched = {"step": Step(), "step_warmup": Step(warmup=0.013, at=0.37), "constant": Constant(),
             "constant_warmup": Constant(warmup=0.05), "cosine": Cosine(warmup=0.02),
             "linear": Linear()}[schedule]
    opt = SGD(lr=0.0731, schedule=sched)
    total = 2003
    for start, n in [(0, 1000), (0, total), (690, 300), (741, 1), (741, 0), (25, 90), (1990, 13)]:
        assert opt.lr_block(start, n, total) == [opt.lr_at(s, total) for s in range(start, start + n)]
