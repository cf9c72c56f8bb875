"""results.csv and best.yaml, each replaced atomically: the sweeper rewrites them after
every batch while users and scripts read them."""
import os
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..atomic import atomic_path, write_text
from ..rundir import BEST_YAML, RESULTS_CSV, read_config, read_overrides
from .frame import run_dir
from .tables import best_trial, completed, objectives


def write_outputs(df: pd.DataFrame, out_dir: str | os.PathLike) -> dict[str, Path]:
    """results.csv always, best.yaml when some trial is COMPLETE."""
    out = Path(out_dir)
    paths = {"results": out / RESULTS_CSV}
    with atomic_path(paths["results"]) as tmp:
        df.to_csv(tmp, index=False)
    if not completed(df).empty:
        paths["best"] = out / BEST_YAML
        write_text(paths["best"], yaml.safe_dump(best_record(df, best_trial(df)), sort_keys=False))
    return paths


def best_record(df: pd.DataFrame, best: pd.Series) -> dict:
    """best.yaml's content: enough to read the result and to rerun it exactly. output_dir is
    relative to the sweep dir; `rerun` is the command as it works from where it was written."""
    out = best.get("output_dir")
    path = run_dir(df, out) if isinstance(out, str) and out else None
    overrides = read_overrides(path) if path else []
    if not overrides and isinstance(best.get("overrides"), str):
        overrides = best["overrides"].split()
    keys = ["number", *objectives(df), "dev_loss", "train_loss", "output_dir"]
    record = {k: _plain(best.get(k)) for k in keys}
    record["overrides"] = overrides
    record["rerun"] = rerun_command(path)
    record["config"] = read_config(path) if path else {}
    return record


def rerun_command(path: Path | None) -> str | None:
    return f"charmlp-rerun {shlex.quote(str(path))}" if path else None


def _plain(x: Any) -> Any:
    """A YAML-safe Python value: numpy scalars unwrapped, NaN/NA -> None."""
    if hasattr(x, "item"):
        x = x.item()
    try:
        if pd.isna(x):
            return None
    except (TypeError, ValueError):
        pass
    return x
