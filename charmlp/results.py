"""charmlp-results: one table of every trial of a sweep, whether it lives in an Optuna storage,
an Optuna sweep dir, a Hydra multirun dir or any tree of run dirs; plus a leaderboard, the
n_embd x n_hidden pivot, results.csv, best.yaml and optional plots.

    charmlp-results outputs/multirun/2024-01-01_12-00-00 --format markdown --plot
    charmlp-results sqlite:///sweeps.db --study names_mlp

`pandas.read_csv(".../results.csv")` is all a reader needs: one row per trial, sorted by
number, failed and unfinished trials included with their state."""
import argparse
import os
import re
import shlex
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import yaml

from .atomic import atomic_path, write_text
from . import rundir
from .errors import CharmlpError
from .rundir import (finite, is_task_override, load_yaml, read_config, read_metrics, read_overrides,
                     trial_dirname)

# Columns after number/state/value/params_*; test_loss only when some trial reported it.
TAIL_COLUMNS = ["train_loss", "dev_loss", "test_loss", "num_params", "steps", "duration_s",
                "steps_per_sec", "datetime_start", "datetime_complete", "output_dir",
                "overrides", "fail_reason"]
METRIC_COLUMNS = ["train_loss", "dev_loss", "test_loss", "num_params", "steps", "steps_per_sec"]
INT_COLUMNS = ["number", "num_params", "steps"]
STATE_OF_STATUS = {"completed": "COMPLETE", "diverged": "FAIL", "running": "RUNNING"}
COMPLETE = "COMPLETE"
PIVOT_ROWS, PIVOT_COLS = "params_model.n_embd", "params_model.n_hidden"
READABLE = ["number", "value", "train_loss", "dev_loss", "num_params", "steps_per_sec", "output_dir"]
SQLITE, JOURNAL = "sqlite:///", "journal:///"


# ---- reading one run dir ------------------------------------------------------------------
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


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime)
    except OSError:
        return None


def run_row(run_dir: Path) -> dict:
    """One results row for a run dir written by charmlp-train (its job number in `_job_num`)."""
    config = read_config(run_dir)
    metrics, problem = read_metrics(run_dir)
    state, reason = run_state(metrics, problem)
    metric = config.get("optimized_metric") or "dev_loss"
    value = finite(metrics.get(metric))
    if state == COMPLETE and value is None:
        state, reason = "FAIL", f"optimized_metric={metric} is not a number in metrics.json"
    overrides = read_overrides(run_dir)
    # Hydra writes .hydra/config.yaml as the job starts and the trainer writes metrics.json
    # as it ends: their times bracket the run (a finished run only).
    start = _mtime(run_dir / ".hydra" / "config.yaml")
    end = _mtime(run_dir / "metrics.json") if state in (COMPLETE, "FAIL") and not problem else None
    row = {"_job_num": read_job_num(run_dir), "state": state,
           "value": value if state == COMPLETE else None,
           **params_from_overrides(overrides),
           **{k: metrics.get(k) for k in METRIC_COLUMNS},
           "duration_s": (end - start).total_seconds() if start and end else metrics.get("wall_time"),
           "datetime_start": _iso(start), "datetime_complete": _iso(end),
           "output_dir": str(run_dir.resolve()), "overrides": " ".join(overrides),
           "fail_reason": reason}
    return row


# ---- overrides -> params ------------------------------------------------------------------
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


# ---- trees of run dirs --------------------------------------------------------------------
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
    rows = [run_row(d) for d in find_run_dirs(root)]
    number_rows(rows)
    return rows


# ---- Optuna storages ----------------------------------------------------------------------
STORAGE_FIX = ("fix: pass the storage URL the sweep used (its study.json has it), "
               "e.g. sqlite:///PATH/study.db")


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Optuna and SQLAlchemy raise many types; the user gets one CharmlpError line."""
    from optuna.exceptions import OptunaError
    from sqlalchemy.exc import SQLAlchemyError
    try:
        yield
    except (OptunaError, SQLAlchemyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CharmlpError(f"{what} ({first}); {STORAGE_FIX}") from None


def open_study_storage(url: str):
    """An existing storage. A missing SQLite/journal file is an error here, not a new empty
    storage: opening would create it, and a typo would silently show zero trials."""
    from .sweep.storage import journal_path, open_storage
    for prefix in (SQLITE, JOURNAL):
        path = journal_path(url) if prefix == JOURNAL else Path(url[len(prefix):])
        if url.startswith(prefix) and not path.is_file():
            raise CharmlpError(f"cannot open Optuna storage {url!r} (no such file); {STORAGE_FIX}")
    try:
        return open_storage(url)
    except CharmlpError as e:  # its fix names hydra.sweeper.storage; a reader needs ours
        raise CharmlpError(f"{str(e).split('; fix:')[0]}; {STORAGE_FIX}") from None


def load_study(url: str, study_name: str | None):
    import optuna
    from .sweep.storage import redact  # messages never show a database password
    storage, shown = open_study_storage(url), redact(url)
    with storage_errors(f"cannot read Optuna storage {shown!r}"):
        names = optuna.get_all_study_names(storage)
    if not names:
        raise CharmlpError(f"Optuna storage {shown!r} holds no study; {STORAGE_FIX}")
    if study_name is None and len(names) > 1:
        raise CharmlpError(f"{shown} holds {len(names)} studies {names}; fix: name one with --study NAME")
    name = study_name or names[0]
    if name not in names:
        raise CharmlpError(f"no study {name!r} in {shown} (it holds {names}); fix: --study NAME, one of those")
    with storage_errors(f"cannot load study {name!r} from {shown!r}"):
        return optuna.load_study(study_name=name, storage=storage)


def trial_run_dir(trial, sweep_dir: Path | None) -> Path | None:
    """The trial's run dir: from its output_dir attr (set once it finished), else by name."""
    out = trial.user_attrs.get("output_dir")
    if isinstance(out, str) and out:  # relative to the sweep dir since sweep dirs can move
        return sweep_dir / out if sweep_dir and not Path(out).is_absolute() else Path(out)
    guess = sweep_dir / trial_dirname(trial.number) if sweep_dir else None
    return guess if guess is not None and guess.is_dir() else None


def trial_row(trial, sweep_dir: Path | None) -> dict:
    """One results row: the study's record first, gaps filled from the trial's run dir."""
    attrs = trial.user_attrs
    run_dir = trial_run_dir(trial, sweep_dir)
    metrics = read_metrics(run_dir)[0] if run_dir else {}
    overrides = attrs.get("overrides")
    if not isinstance(overrides, list):
        overrides = read_overrides(run_dir) if run_dir else []
    values = trial.values  # multi-objective studies: `value` is the first objective
    return {"number": trial.number, "state": trial.state.name,
            "value": values[0] if values else None,
            **{f"params_{k}": v for k, v in trial.params.items()},
            **{k: attrs[k] if k in attrs else metrics.get(k) for k in METRIC_COLUMNS},
            "duration_s": trial.duration.total_seconds() if trial.duration else None,
            "datetime_start": _iso(trial.datetime_start),
            "datetime_complete": _iso(trial.datetime_complete),
            "output_dir": _relative(run_dir, sweep_dir) if run_dir else None,
            "overrides": " ".join(map(str, overrides)),
            "fail_reason": attrs.get("fail_reason")}


def _relative(run_dir: Path, sweep_dir: Path | None) -> str:
    """A trial dir relative to its sweep dir (sweep dirs get moved), else as it is."""
    try:
        return str(run_dir.relative_to(sweep_dir)) if sweep_dir else str(run_dir)
    except ValueError:
        return str(run_dir)


def rows_from_study(study, sweep_dir: Path | None) -> list[dict]:
    with storage_errors(f"cannot read the trials of study {study.study_name!r}"):
        trials = study.get_trials(deepcopy=False)
    return [trial_row(t, sweep_dir) for t in trials]


def study_direction(study) -> str:
    directions = study.directions
    return directions[0].name.lower() if directions else "minimize"


# ---- collect --------------------------------------------------------------------------------
def read_study_json(sweep_dir: Path) -> tuple[str, str | None]:
    found = rundir.read_study_json(sweep_dir)
    if found is None:
        raise CharmlpError(f"{sweep_dir / 'study.json'} is unreadable; fix: pass the study's storage "
                           "URL instead: charmlp-results sqlite:///PATH/study.db --study NAME")
    return found


def collect(path: str, study_name: str | None = None) -> pd.DataFrame:
    """Every trial under PATH (a storage URL, an Optuna sweep dir, a multirun dir, or any
    dir of runs) as one DataFrame, one row per trial, sorted by number."""
    path = str(path)
    if "://" in path:
        return _study_frame(load_study(path, study_name), None)
    p = Path(path)
    if not p.exists():
        raise CharmlpError(f"{path} does not exist; fix: pass a sweep dir, a dir of runs, "
                           "or an Optuna storage URL (sqlite:///PATH)")
    if p.is_file() and p.suffix in (".db", ".sqlite", ".sqlite3"):
        return _study_frame(load_study(f"{SQLITE}{p.resolve()}", study_name), None)
    if (p / "study.json").is_file():
        url, name = read_study_json(p)
        return _study_frame(load_study(url, study_name or name), p.resolve())
    if not p.is_dir():
        raise CharmlpError(f"{path} is not a directory; fix: pass a sweep dir, a dir of runs, "
                           "or an Optuna storage URL (sqlite:///PATH)")
    rows = rows_from_dirs(p)
    if not rows:
        raise CharmlpError(f"no runs found under {path} (no .hydra/config.yaml at any depth); "
                           "fix: pass the dir charmlp-train wrote (hydra.run.dir / hydra.sweep.dir)")
    return to_frame(rows)


def _study_frame(study, sweep_dir: Path | None) -> pd.DataFrame:
    df = to_frame(rows_from_study(study, sweep_dir))
    df.attrs["direction"] = study_direction(study)
    df.attrs["study_name"] = study.study_name
    return df


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the results table: fixed column order, numeric columns typed, by number."""
    params = sorted({k for r in rows for k in r if k.startswith("params_")})
    tail = [c for c in TAIL_COLUMNS
            if c != "test_loss" or any(finite(r.get(c)) is not None for r in rows)]
    df = pd.DataFrame(rows, columns=["number", "state", "value", *params, *tail])
    for col in ["value", "duration_s", *METRIC_COLUMNS]:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in INT_COLUMNS:
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


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


# ---- views ----------------------------------------------------------------------------------
def _completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["state"] == COMPLETE) & df["value"].notna()]


def leaderboard(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The COMPLETE trials, best first (ties: earlier trial first)."""
    ascending = df.attrs.get("direction", "minimize") == "minimize"
    done = _completed(df).sort_values(["value", "number"], ascending=[ascending, True], kind="stable")
    return done.head(top).reset_index(drop=True)


def pivot(df: pd.DataFrame, rows: str = PIVOT_ROWS, cols: str = PIVOT_COLS,
          value: str = "dev_loss") -> pd.DataFrame:
    """Min `value` per (rows, cols) cell over COMPLETE trials. When it can't be built, an
    empty frame whose attrs['message'] says why (the CLI prints it)."""
    missing = [c for c in (rows, cols, value) if c not in df.columns]
    if missing:
        return _empty_pivot(f"no {rows} x {cols} table: this sweep has no {', '.join(missing)} column")
    done = _completed(df).dropna(subset=[rows, cols, value])
    if done.empty:
        return _empty_pivot(f"no {rows} x {cols} table: no COMPLETE trial has all of them")
    return done.pivot_table(index=rows, columns=cols, values=value, aggfunc="min").sort_index()


def _empty_pivot(message: str) -> pd.DataFrame:
    table = pd.DataFrame()
    table.attrs["message"] = message
    return table


def best_trial(df: pd.DataFrame) -> pd.Series:
    board = leaderboard(df, top=1)
    if board.empty:
        counts = ", ".join(f"{n} {s}" for s, n in df["state"].value_counts().items()) or "no trials"
        raise CharmlpError(f"no COMPLETE trial yet ({counts}); fix: look at fail_reason in "
                           "results.csv, fix the cause, and rerun or resume the sweep")
    return board.iloc[0]


# ---- outputs --------------------------------------------------------------------------------
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


def best_record(best: pd.Series, base: Path) -> dict:
    """best.yaml's content: enough to read the result and to rerun it exactly. Its output_dir
    is as in results.csv (relative to the sweep dir `base` for a sweep)."""
    out = best.get("output_dir")
    run_dir = base / out if isinstance(out, str) and out else None
    overrides = read_overrides(run_dir) if run_dir else []
    if not overrides and isinstance(best.get("overrides"), str):
        overrides = best["overrides"].split()
    record = {k: _plain(best.get(k)) for k in ("number", "value", "dev_loss", "train_loss", "output_dir")}
    record["overrides"] = overrides
    record["rerun"] = f"charmlp-rerun {shlex.quote(str(run_dir))}" if run_dir else None
    record["config"] = read_config(run_dir) if run_dir else {}
    return record


def write_outputs(df: pd.DataFrame, out_dir: str | os.PathLike) -> dict[str, Path]:
    """results.csv always, best.yaml when some trial is COMPLETE; both replaced atomically,
    since the sweeper rewrites them while users and scripts read them."""
    out = Path(out_dir)
    paths = {"results": out / "results.csv"}
    with atomic_path(paths["results"]) as tmp:
        df.to_csv(tmp, index=False)
    if not _completed(df).empty:
        paths["best"] = out / "best.yaml"
        write_text(paths["best"], yaml.safe_dump(best_record(best_trial(df), out), sort_keys=False))
    return paths


def plot(df: pd.DataFrame, out_dir: str | os.PathLike) -> dict[str, Path]:
    """heatmap.png (the pivot, annotated) and trials.png (dev loss per trial, running best)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"heatmap": _save(_heatmap_figure(pivot(df)), out / "heatmap.png"),
            "trials": _save(_trials_figure(df), out / "trials.png")}


def _figure():
    # Figure without pyplot: no global backend switch, no GUI, safe in sweeper workers.
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 5), layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _heatmap_figure(table: pd.DataFrame):
    fig, ax = _figure()
    if table.empty:
        _say(ax, table.attrs.get("message", "nothing to show"))
        return fig
    image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis_r", aspect="auto")
    fig.colorbar(image, ax=ax, label="min dev loss")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    ax.set_xlabel(table.columns.name.removeprefix("params_"))
    ax.set_ylabel(table.index.name.removeprefix("params_"))
    for (i, j), v in pd.DataFrame(table.to_numpy(dtype=float)).stack().items():
        ax.text(j, i, f"{v:.4f}", ha="center", va="center", color="w",
                bbox={"facecolor": "black", "alpha": 0.3, "linewidth": 0})
    ax.set_title("min dev loss per cell (COMPLETE trials)")
    return fig


def _trials_figure(df: pd.DataFrame):
    fig, ax = _figure()
    done = _completed(df).dropna(subset=["dev_loss"]).sort_values("number")
    if done.empty:
        _say(ax, "no COMPLETE trial with a dev loss yet")
        return fig
    x, y = done["number"].astype(float), done["dev_loss"]
    ax.plot(x, y, "o", alpha=0.6, label="dev loss")
    ax.step(x, y.cummin(), where="post", color="C3", label="best so far")
    failed = int((df["state"] == "FAIL").sum())
    ax.set_title(f"{len(done)} complete, {failed} failed of {len(df)} trials")
    ax.set_xlabel("trial number")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("dev loss")
    ax.legend()
    return fig


def _say(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()


# ---- CLI ------------------------------------------------------------------------------------
def varying_params(df: pd.DataFrame) -> list[str]:
    """params_* columns that differ between trials: a multirun's fixed overrides (data.path=...)
    are params too, but only crowd the leaderboard. All of them when nothing varies."""
    params = [c for c in df.columns if c.startswith("params_")]
    varying = [c for c in params if df[c].astype(str).nunique() > 1]
    return varying or params


def readable(board: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    cols = [c for c in READABLE[:2] + params + READABLE[2:] if c in board.columns]
    view = board[cols].rename(columns=lambda c: c.removeprefix("params_"))
    return view.round({"value": 4, "train_loss": 4, "dev_loss": 4, "steps_per_sec": 1})


def render(table: pd.DataFrame, fmt: str, index: bool) -> str:
    if fmt == "markdown":
        return table.to_markdown(index=index)
    return table.to_string(index=index)


def report(df: pd.DataFrame, paths: dict[str, Path], top: int, fmt: str) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in df["state"].value_counts().items())
    lines = [f"{name}: {path}" for name, path in paths.items()]
    lines += ["", f"{len(df)} trials ({counts}); top {top} by value:"]
    board = leaderboard(df, top)
    lines.append(render(readable(board, varying_params(df)), fmt, index=False) if not board.empty else "(no COMPLETE trial yet)")
    table = pivot(df)
    lines += ["", f"min dev loss, {PIVOT_ROWS.removeprefix('params_')} (rows) x "
                  f"{PIVOT_COLS.removeprefix('params_')} (columns):"]
    lines.append(render(_short_axes(table).round(4), fmt, index=True) if not table.empty else table.attrs["message"])
    return "\n".join(lines)


def _short_axes(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table.index.name = table.index.name.removeprefix("params_")
    table.columns.name = None  # the heading above names the columns
    return table


def default_out(path: str) -> Path:
    return Path(path) if "://" not in path and Path(path).is_dir() else Path.cwd()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="charmlp-results", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="sweep dir, dir of runs, or Optuna storage URL (sqlite:///x.db)")
    ap.add_argument("--study", help="study name (needed when the storage holds several)")
    ap.add_argument("--out", help="where results.csv/best.yaml go (default: PATH if a dir, else .)")
    ap.add_argument("--top", type=int, default=10, help="leaderboard rows (default 10)")
    ap.add_argument("--format", choices=("text", "markdown"), default="text")
    ap.add_argument("--plot", action="store_true", help="also write heatmap.png and trials.png")
    args = ap.parse_args(argv)
    try:
        df = collect(args.path, args.study)
        if df.empty:
            raise CharmlpError(f"no trials found in {args.path}; fix: run the sweep first, or pass "
                               "the sweep that has them")
        out = Path(args.out) if args.out else default_out(args.path)
        paths = _write_all(df, out, args.plot)
    except CharmlpError as e:
        print(f"charmlp-results: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    print(report(df, paths, args.top, args.format))
    return 0


def _write_all(df: pd.DataFrame, out: Path, with_plots: bool) -> dict[str, Path]:
    try:
        paths = write_outputs(df, out)
        return {**paths, **plot(df, out)} if with_plots else paths
    except OSError as e:
        raise CharmlpError(f"cannot write into {out} ({e.strerror or e}); fix: pass --out DIR "
                           "that you can write to") from None


if __name__ == "__main__":
    sys.exit(main())
