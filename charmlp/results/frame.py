"""The results table: rows from any source -> one typed DataFrame, and collect(), which
picks the source a path names (storage URL, Optuna sweep dir, tree of run dirs).

Columns: number, state, value (or values_0, values_1, ... and pareto for a multi-objective
study), params_<key> per parameter, then TAIL_COLUMNS (test_loss and steps_done only when
some trial has them). output_dir is relative to the sweep dir, held in df.attrs['root']."""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CharmlpError
from ..rundir import SQLITE, STUDY_JSON, finite
from .rundirs import METRIC_COLUMNS, rows_from_dirs
from .studies import (is_grid_study, load_study, missing_file, read_study_json, rows_from_study,
                      storage_errors, sweep_dir_of_url)

TAIL_COLUMNS = ["train_loss", "dev_loss", "test_loss", "num_params", "steps", "steps_done", "duration_s",
                "steps_per_sec", "datetime_start", "datetime_complete", "output_dir", "overrides",
                "fail_reason"]
OPTIONAL = ("test_loss", "steps_done")  # only when some trial has them
INT_COLUMNS = ["number", "num_params", "steps", "steps_done"]
log = logging.getLogger(__name__)
PATH_FIX = "fix: pass a sweep dir, a dir of runs, or an Optuna storage URL (sqlite:///PATH)"


@dataclass
class Sweep:
    """A collected sweep: its table, and its Optuna study when it has one (for the plots)."""
    df: pd.DataFrame
    study: Any = None


def collect(path: str, study_name: str | None = None) -> pd.DataFrame:
    """Every trial under PATH (a storage URL, an Optuna sweep dir, a multirun dir, or any
    dir of runs) as one DataFrame, one row per trial, sorted by number."""
    return open_sweep(path, study_name).df


def open_sweep(path: str, study_name: str | None = None) -> Sweep:
    path = str(path)
    if "://" in path:
        return _from_study(load_study(path, study_name), sweep_dir_of_url(path))
    p = Path(path)
    if not p.exists():
        raise CharmlpError(f"{path} does not exist; {PATH_FIX}")
    if p.is_file() and p.suffix in (".db", ".sqlite", ".sqlite3"):
        url = f"{SQLITE}{p.resolve()}"
        return _from_study(load_study(url, study_name), sweep_dir_of_url(url))
    if (p / STUDY_JSON).is_file():
        url, name = read_study_json(p.resolve())
        if not missing_file(url):
            return _from_study(load_study(url, study_name or name), p.resolve())
        # The study's file is gone (deleted, or not copied with the dir): its trial dirs
        # still hold every trial that ran, without the study's view of them.
        log.warning("%s: the study's storage %s is gone; reading the trial dirs instead", path, url)
    if not p.is_dir():
        raise CharmlpError(f"{path} is not a directory; {PATH_FIX}")
    rows = rows_from_dirs(p)
    if not rows:
        raise CharmlpError(f"no runs found under {path} (no .hydra/config.yaml at any depth); "
                           "fix: pass the dir charmlp-train wrote (hydra.run.dir / hydra.sweep.dir)")
    df = to_frame(rows)
    df.attrs.update(root=str(p.resolve()), grid=full_grid(df))
    return Sweep(df)


def _from_study(study, sweep_dir: Path | None) -> Sweep:
    df = to_frame(rows_from_study(study, sweep_dir))
    with storage_errors(f"cannot read the trials of study {study.study_name!r}"):
        grid = is_grid_study(study) or (all_categorical(study) and full_grid(df))
    df.attrs.update(directions=[d.name.lower() for d in study.directions], study_name=study.study_name,
                    root=str(sweep_dir) if sweep_dir else None, grid=grid)
    return Sweep(df, study)


def all_categorical(study) -> bool:
    from optuna.distributions import CategoricalDistribution
    dists = [d for t in study.get_trials(deepcopy=False) for d in t.distributions.values()]
    return bool(dists) and all(isinstance(d, CategoricalDistribution) for d in dists)


def full_grid(df: pd.DataFrame) -> bool:
    """Every combination of the params' values has a trial (a grid, as Hydra's basic
    sweeper or Optuna's GridSampler run it), with at least two params that vary."""
    params = [c for c in df.columns if c.startswith("params_") and df[c].nunique() > 1]
    if len(params) < 2:
        return False
    combos = df[params].dropna().astype(str).drop_duplicates()
    size = 1
    for c in params:
        size *= df[c].nunique()
    return len(combos) == size


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the results table: fixed column order, numeric columns typed, by number."""
    keys = {k for r in rows for k in r}
    params = sorted(k for k in keys if k.startswith("params_"))
    values = sorted(k for k in keys if k.startswith("values_")) or ["value"]
    head = ["number", "state", *values, *(["pareto"] if "pareto" in keys else [])]
    tail = [c for c in TAIL_COLUMNS if c not in OPTIONAL or any(finite(r.get(c)) is not None for r in rows)]
    df = pd.DataFrame(rows, columns=[*head, *params, *tail])
    for col in [*values, "duration_s", *METRIC_COLUMNS]:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in INT_COLUMNS:
        if col in df:
            df[col] = _int_column(df[col])
    for col in params:  # an integer param stays integer when some trial has no params (8, not 8.0)
        given = [r[col] for r in rows if r.get(col) is not None]
        if given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            df[col] = df[col].astype("Int64")
    return df.sort_values("number", kind="stable").reset_index(drop=True)


def _int_column(col: pd.Series) -> pd.Series:
    """Nullable ints, so results.csv says 12345 not 12345.0 even with gaps."""
    numeric = pd.to_numeric(col, errors="coerce")
    whole = numeric.dropna()
    return numeric.astype("Int64") if ((whole % 1) == 0).all() else numeric


def run_dir(df: pd.DataFrame, output_dir: str) -> Path:
    """A row's run dir: output_dir is relative to the sweep dir the table was read from."""
    root = df.attrs.get("root")
    return Path(root) / output_dir if root else Path(output_dir)
