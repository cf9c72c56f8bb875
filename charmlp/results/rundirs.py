"""Rows from run dirs: any tree of dirs charmlp-train wrote (a Hydra multirun, a parent of
single runs), read through the ground-floor layout in charmlp.rundir."""
import csv
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from ..rundir import (HISTORY, METRICS, finite, is_task_override, load_yaml, read_config, read_metrics,
                      read_overrides)

# Metric columns of results.csv, in order; test_loss and steps_done appear only when measured.
METRIC_COLUMNS = ["train_loss", "dev_loss", "test_loss", "num_params", "steps", "steps_done",
                  "steps_per_sec"]
STATE_OF_STATUS = {"completed": "COMPLETE", "diverged": "FAIL", "pruned": "PRUNED", "running": "RUNNING"}
COMPLETE = "COMPLETE"


def read_job_num(run_dir: Path) -> int | None:
    """hydra.job.num: the job's index in its multirun; single runs have '???' there."""
    hydra = load_yaml(run_dir / ".hydra" / "hydra.yaml")
    try:
        num = hydra["hydra"]["job"]["num"]
    except (TypeError, KeyError):
        return None
    return num if isinstance(num, int) and not isinstance(num, bool) else None


def run_state(metrics: dict, problem: str | None) -> tuple[str, str | None]:
    """(state, fail_reason) from metrics.json, in Optuna's state names."""
    if problem:
        return "FAIL", problem
    status = metrics.get("status")
    state = STATE_OF_STATUS.get(status)
    if state is None:
        return "FAIL", f"metrics.json has unknown status {status!r}"
    if status == "diverged":
        return state, f"diverged: {metrics.get('reason', 'no reason recorded')}"
    return state, None


def run_metrics(metrics: dict) -> dict:
    """The metric columns of one run; a pruned run's last dev loss stands in for dev_loss."""
    row = {k: metrics.get(k) for k in METRIC_COLUMNS}
    if row["dev_loss"] is None:
        row["dev_loss"] = metrics.get("last_dev_loss")
    return row


def objective_value(metrics: dict, metric: Any) -> float | None:
    """The optimized metric's value; a list of metrics (multi-objective) ranks by the first."""
    if isinstance(metric, list):
        metric = metric[0] if metric else None
    return finite(metrics.get(metric or "dev_loss"))


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime)
    except OSError:
        return None


def iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def run_row(run_dir: Path, root: Path) -> dict:
    """One results row for a run dir written by charmlp-train (its job number in `_job_num`)."""
    metrics, problem = read_metrics(run_dir)
    state, reason = run_state(metrics, problem)
    value = objective_value(metrics, read_config(run_dir).get("optimized_metric"))
    if state == COMPLETE and value is None:
        state, reason = "FAIL", "the optimized_metric is not a number in metrics.json"
    overrides = read_overrides(run_dir)
    # Hydra writes .hydra/config.yaml as the job starts and the trainer writes metrics.json
    # as it ends: their times bracket the run (a finished run only).
    start = _mtime(run_dir / ".hydra" / "config.yaml")
    end = _mtime(run_dir / METRICS) if state != "RUNNING" and not problem else None
    return {"_job_num": read_job_num(run_dir), "state": state,
            "value": value if state == COMPLETE else None,
            **params_from_overrides(overrides), **run_metrics(metrics),
            "duration_s": (end - start).total_seconds() if start and end else metrics.get("wall_time"),
            "datetime_start": iso(start), "datetime_complete": iso(end),
            "output_dir": relative_dir(run_dir, root), "overrides": " ".join(overrides),
            "fail_reason": reason}


def relative_dir(run_dir: Path, root: Path | None) -> str:
    """run_dir relative to the sweep dir (portable when the sweep dir moves), else as given."""
    if root is not None:
        try:
            return str(Path(run_dir).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(run_dir)


def parse_value(text: str) -> Any:
    """'8' -> 8, '0.1' -> 0.1, "'a b'" -> 'a b'; anything else stays a string."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def params_from_overrides(overrides: Iterable[str]) -> dict:
    """{'params_<key>': value} for each key=value override; deletions (~key) set nothing."""
    params = {}
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and not key.startswith("~") and is_task_override(o):
            params[f"params_{key.lstrip('+')}"] = parse_value(value)
    return params


def _natural_key(path: Path) -> list:
    """Sort 'sweep/2' before 'sweep/10'."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(path))]


def find_run_dirs(root: Path) -> list[Path]:
    """Every dir under root (root included) holding .hydra/config.yaml, in natural order.
    Hidden dirs are not searched: .hydra holds a run's configs, never another run."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if os.path.isfile(os.path.join(dirpath, ".hydra", "config.yaml")):
            found.append(Path(dirpath))
    return sorted(found, key=_natural_key)


def number_rows(rows: list[dict]) -> None:
    """Number rows by Hydra job number when those identify them (one multirun), else by
    order: a tree of several sweeps repeats job numbers, and single runs have none."""
    nums = [r.pop("_job_num") for r in rows]
    unique = None not in nums and len(set(nums)) == len(nums)
    for i, (row, num) in enumerate(zip(rows, nums)):
        row["number"] = num if unique else i


def rows_from_dirs(root: Path) -> list[dict]:
    dirs = find_run_dirs(root)
    rows = [run_row(d, root) for d in dirs]
    fill_params_from_configs(rows, dirs)
    number_rows(rows)
    return rows


def fill_params_from_configs(rows: list[dict], dirs: list[Path]) -> None:
    """A run that kept a default (a plain run beside a sweep over that key) has no override
    for it, but its saved config holds the value it ran with: the table shows that value,
    not 'not measured'. Only plain values: a config group's choice is not in config.yaml."""
    keys = {k for row in rows for k in row if k.startswith("params_")}
    for row, run_dir in zip(rows, dirs):
        missing = keys.difference(row)
        config = read_config(run_dir) if missing else {}
        for key in missing:
            value = dotted(config, key[len("params_"):])
            if isinstance(value, (int, float, str, bool)):
                row[key] = value


def dotted(config: dict, key: str) -> Any:
    """config['model']['n_embd'] for 'model.n_embd'; None where any part is missing."""
    for part in key.split("."):
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config


def read_dev_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, dev loss) at each evaluation in the run's history.csv; [] when there is none."""
    try:
        with open(Path(run_dir) / HISTORY, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    curve = []
    for r in rows:
        step, dev = finite(_number(r.get("step"))), finite(_number(r.get("dev_loss")))
        if step is not None and dev is not None:
            curve.append((int(step), dev))
    return curve


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
