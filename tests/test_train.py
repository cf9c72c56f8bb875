import csv
import json
import math

import pytest
import torch

from charmlp.checkpoint import load_checkpoint
from charmlp.optim import SGD, AdamW, Cosine, Linear, Step
from charmlp.errors import CharmlpError, TrialDiverged
from charmlp.trainer import build, pick_device, train
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
    ("data.splits=abc", "data.splits='abc' must be three positive fractions summing to 1"),
    ("optimizer.lr=abc", "optimizer.lr='abc' must be a number"),
    ("trainer.device=tpu", "trainer.device='tpu' is unknown; use auto, cpu, cuda or cuda:N"),
    # before training, not after a whole run as before
    ("optimized_metric=foo", "optimized_metric='foo' is not a metric of a run; choose one of dev_loss"),
    ("optimized_metric=[dev_loss,started_at]", "optimized_metric='started_at' is not a metric"),
    ("optimized_metric=test_loss", "optimized_metric=test_loss needs report_test=true"),
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
        block = opt.lr_block(start, n, total)
        assert block.dtype == torch.float64 and block.is_contiguous()
        assert block.tolist() == [opt.lr_at(s, total) for s in range(start, start + n)]


@pytest.mark.parametrize("overrides, message", [
    (["data.splits=abc"], "data.splits='abc' must be three positive fractions summing to 1"),
    (["data.splits=[a,b,c]"], "data.splits[0]='a' must be a number"),
    (["data.splits=[0.5,0.3,0.1,0.1]"], "data.splits=[0.5, 0.3, 0.1, 0.1] must be three"),
    (["data.splits=[0.5,0.5]"], "data.splits=[0.5, 0.5] must be three"),
    (["data.split_seed=abc"], "data.split_seed='abc' must be an integer"),
    (["model.bn_momentum=abc"], "model.bn_momentum='abc' must be a number"),
    (["optimizer.lr=abc"], "optimizer.lr='abc' must be a number"),
    (["optimizer.momentum=abc"], "optimizer.momentum='abc' must be a number"),
    (["optimizer.momentum=1"], "optimizer.momentum=1 must be in [0, 1)"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1 must be >= 0"),
    (["optimizer.weight_decay=abc"], "optimizer.weight_decay='abc' must be a number"),
    (["optimizer=adamw", "optimizer.beta1=abc"], "optimizer.beta1='abc' must be a number"),
    (["optimizer=adamw", "optimizer.beta2=1.5"], "optimizer.beta2=1.5 must be in [0, 1)"),
    (["optimizer=adamw", "optimizer.eps=-1e-8"], "optimizer.eps=-1e-08 must be >= 0"),
    (["optimizer.schedule.gamma=abc"], "optimizer.schedule.gamma='abc' must be a number"),
    (["optimizer.schedule.gamma=-0.1"], "optimizer.schedule.gamma=-0.1 must be positive"),
    (["optimizer.schedule.at=2"], "optimizer.schedule.at=2 must be a fraction of the steps, in [0, 1]"),
    (["optimizer.schedule.at=abc"], "optimizer.schedule.at='abc' must be a number"),
    (["optimizer.schedule.warmup=1.5"], "optimizer.schedule.warmup=1.5 must be a fraction"),
    (["optimizer/schedule=cosine", "optimizer.schedule.min_ratio=abc"],
     "optimizer.schedule.min_ratio='abc' must be a number"),
    (["optimizer/schedule=linear", "optimizer.schedule.min_ratio=-1"],
     "optimizer.schedule.min_ratio=-1 must be in [0, 1]"),
    (["optimizer.schedule=abc"], "optimizer.schedule='abc' must be a schedule"),
])
def test_bad_settings_are_one_line_naming_the_setting(make_cfg, overrides, message):
    with pytest.raises(CharmlpError) as e:
        build(make_cfg(*overrides))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("make, field, value", [
    (lambda: SGD(momentum=0.9, weight_decay=0), "momentum", 0.9),
    (lambda: SGD(lr=1), "lr", 1),  # an int stays an int: valid configs compute as before
    (lambda: AdamW(beta1=0, beta2=0, eps=0), "eps", 0),
    (lambda: Step(at=0, gamma=2, warmup=1), "at", 0),
    (lambda: Step(at=1), "at", 1),
    (lambda: Cosine(min_ratio=0), "min_ratio", 0),
    (lambda: Linear(min_ratio=1), "min_ratio", 1),
])
def test_the_edges_of_each_range_are_accepted_as_given(make, field, value):
    spec = make()
    assert getattr(spec, field) == value and type(getattr(spec, field)) is type(value)


@pytest.mark.parametrize("name, cuda, message", [
    ("tpu", False, "trainer.device='tpu' is unknown; use auto, cpu, cuda or cuda:N"),
    ("gpu", True, "trainer.device='gpu' is unknown"),
    ("cuda:x", True, "trainer.device='cuda:x' is unknown"),
    ("cuda", False, "trainer.device='cuda': CUDA is not available here; fix: trainer.device=auto or"),
    ("cuda:0", False, "CUDA is not available here"),
    ("cuda:2", True, "trainer.device='cuda:2': this machine has 2 CUDA device(s), cuda:0 to cuda:1"),
])
def test_an_unusable_device_is_one_line(monkeypatch, name, cuda, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if cuda else 0)
    with pytest.raises(CharmlpError) as e:
        pick_device(name)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name, cuda, device", [
    ("auto", False, "cpu"), ("cpu", True, "cpu"), ("auto", True, "cuda"), ("cuda:1", True, "cuda:1"),
])
def test_a_usable_device_is_picked(monkeypatch, name, cuda, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if cuda else 0)
    assert pick_device(name) == torch.device(device)


def test_a_sweep_may_not_select_on_the_test_split():
    from charmlp.train import check_objective
    check_objective(["dev_loss", "num_params"], report_test=False, sweeping=True)
    check_objective("test_loss", report_test=True, sweeping=False)  # a single run's own report
    with pytest.raises(CharmlpError, match="never for selection; fix: optimized_metric=dev_loss"):
        check_objective("test_loss", report_test=True, sweeping=True)


def test_only_the_jobs_own_log_lines_get_the_trial_label():
    """With hydra/launcher=basic the sweep logs through the job's handlers too: its lines,
    which name their trial already, read 'trial 0 interrupted', not 'trial 0 | trial 0 ...'."""
    import logging
    from charmlp.train import label_log_lines
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        label_log_lines("trial 0")
        logging.getLogger("charmlp.trainer").warning("step 100")
        logging.getLogger("charmlp.sweep.impl").warning("trial 0 interrupted")
    finally:
        root.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["trial 0 | step 100", "trial 0 interrupted"]
