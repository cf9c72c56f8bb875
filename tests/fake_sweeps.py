"""Sweep dirs as charmlp's sweeper leaves them, built directly with Optuna (no training):
a real SQLite study, study.json in the portable form (storage and output_dir relative to the
sweep dir), and trial dirs with .hydra/, metrics.json and history.csv.

    tpe     16 TPE trials over 3 params, two outliers far above the rest
    grid    a 3 x 3 GridSampler grid
    pruned  complete, pruned (intermediate values reported) and failed trials
    pareto  two objectives: dev loss against num_params"""
import json
import math
import random
from pathlib import Path

import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

STEPS, EVAL = 1000, 100
SPACE = {"model.n_embd": IntDistribution(4, 48), "model.n_hidden": IntDistribution(64, 768, log=True),
         "optimizer.lr": FloatDistribution(0.01, 0.3, log=True)}
GRID = {"model.n_embd": [8, 16, 24], "model.n_hidden": [100, 200, 300]}


def final_dev(params: dict, rng: random.Random) -> float:
    """A smooth loss surface with its minimum near n_embd 32, n_hidden 400, lr 0.1, plus noise."""
    e, h = params["model.n_embd"], params["model.n_hidden"]
    lr = params.get("optimizer.lr", 0.1)
    return (2.07 + 0.00002 * (e - 32) ** 2 + 0.004 * math.log(h / 400) ** 2
            + 0.006 * math.log(lr / 0.1) ** 2 + rng.gauss(0, 0.002))


def curve(final: float, until: int = STEPS) -> list[tuple[int, float]]:
    return [(s, final + 1.2 * math.exp(-s / 250)) for s in range(EVAL, until + 1, EVAL)]


def write_trial(run_dir: Path, params: dict, metrics: dict, points: list[tuple[int, float]],
                metric: str | list = "dev_loss") -> None:
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True)
    overrides = [f"{k}={v}" for k, v in params.items()]
    config = {"model": {"n_embd": 10, "n_hidden": 200}, "trainer": {"steps": STEPS},
              "optimized_metric": metric}
    (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": 0}}}))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    rows = ["step,lr,batch_loss,dev_loss"] + [f"{s},0.1,{d + 0.05:.6f},{d:.6f}" for s, d in points]
    (run_dir / "history.csv").write_text("\n".join(rows) + "\n")


def metrics_of(dev: float, params: dict, status: str = "completed", **extra) -> dict:
    n_params = params["model.n_embd"] * 27 + params["model.n_hidden"] * (3 * params["model.n_embd"] + 28)
    return {"status": status, "train_loss": dev - 0.07, "dev_loss": dev, "num_params": n_params,
            "steps": STEPS, "steps_per_sec": 5000.0, "wall_time": 0.2, **extra}


def make_sweep(root: Path, kind: str, n: int = 16, absolute: bool = False) -> Path:
    """absolute: paths as sweeps before issue 10 stored them (study.json's storage, output_dir)."""
    sweep = root / kind
    sweep.mkdir(parents=True)
    directions = ["minimize", "minimize"] if kind == "pareto" else ["minimize"]
    sampler = (optuna.samplers.GridSampler(GRID, seed=0) if kind == "grid"
               else optuna.samplers.TPESampler(seed=0, n_startup_trials=6))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=kind, storage=f"sqlite:///{sweep / 'study.db'}",
                                sampler=sampler, directions=directions)
    storage = f"sqlite:///{sweep / 'study.db'}" if absolute else "sqlite:///study.db"
    (sweep / "study.json").write_text(json.dumps({"storage": storage, "study_name": kind}))
    space = {k: CategoricalDistribution(v) for k, v in GRID.items()} if kind == "grid" else SPACE
    rng = random.Random(0)
    for i in range(9 if kind == "grid" else n):
        add_trial(study, sweep, kind, space, i, rng, absolute)
    return sweep


def add_trial(study, sweep: Path, kind: str, space: dict, i: int, rng: random.Random,
              absolute: bool) -> None:
    t = study.ask(space)
    out = f"trial_{t.number:04d}"
    # Relative to the sweep dir, as the sweeper stores it.
    t.set_user_attr("output_dir", str(sweep / out) if absolute else out)
    t.set_user_attr("overrides", [f"{k}={v}" for k, v in t.params.items()])
    dev = final_dev(t.params, rng) + (0.13 if kind == "tpe" and i in (3, 7) else 0)
    if kind == "pruned" and i % 4 == 2:  # pruned at step 300, its reports in the study
        points = curve(dev + 0.05, 300)
        for step, value in points:
            t.report(value, step)
        write_trial(sweep / out, t.params, metrics_of(points[-1][1], t.params, "pruned", steps_done=300), points)
        study.tell(t, state=TrialState.PRUNED)
        return
    if kind == "pruned" and i % 4 == 3:
        write_trial(sweep / out, t.params, {"status": "diverged", "reason": "loss nan at step 40"}, [])
        t.set_user_attr("fail_reason", "TrialDiverged: loss nan at step 40")
        study.tell(t, state=TrialState.FAIL)
        return
    metrics = metrics_of(dev, t.params)
    metric = ["dev_loss", "num_params"] if kind == "pareto" else "dev_loss"
    write_trial(sweep / out, t.params, metrics, curve(dev), metric)
    for key in ("train_loss", "dev_loss", "num_params", "steps", "steps_per_sec"):
        t.set_user_attr(key, metrics[key])
    try:
        study.tell(t, [dev, metrics["num_params"]] if kind == "pareto" else dev)
    except RuntimeError:  # GridSampler stops the study when the grid is done, as in the sweeper
        pass
