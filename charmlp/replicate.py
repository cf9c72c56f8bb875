"""charmlp-replicate SWEEP_DIR --top 3 --seeds 3 --jobs 2: rerun the sweep's top trials with
other init seeds (trainer.seed=1..S), in parallel slots, and rank them by the mean.

The sweep's own value of a trial is the best of many draws, so it is biased low; the
replicates use new seeds only. A gap to the best mean smaller than the seed noise is marked
a tie. Runs land in SWEEP_DIR/replicates/trial_NNNN/seed_S/ (finished ones are reused) and
one row per run in SWEEP_DIR/replicates.csv."""
import argparse
import math
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .errors import CharmlpError
from .rerun import original_cwd, rerun_argv
from .results import collect, leaderboard
from .results.frame import run_dir
from .results.rundirs import objective_value, relative_dir
from .results.tables import directions, objectives, short_names, varying_params
from .rundir import read_config, read_metrics, trial_dirname

REPLICATES_DIR, REPLICATES_CSV = "replicates", "replicates.csv"
FIXED = ("rank", "trial", "sweep_value", "mean", "std", "n", "gap", "tie", "mean ± std")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # a slot is one core


def plan(df: pd.DataFrame, top: int, seeds: int) -> list[dict]:
    """One job per (top trial, seed): the trial's run dir and where its replicate goes."""
    board = leaderboard(df, top)
    if board.empty:
        raise CharmlpError("the sweep has no COMPLETE trial to replicate; fix: run or resume it first")
    root = Path(df.attrs["root"])
    jobs = []
    for row in board.itertuples():
        for seed in range(1, seeds + 1):
            jobs.append({"number": row.number, "seed": seed, "source": run_dir(df, row.output_dir),
                         "out": root / REPLICATES_DIR / trial_dirname(row.number) / f"seed_{seed}",
                         "sweep_value": getattr(row, objectives(df)[0]),
                         **{c: board.at[row.Index, c] for c in varying_params(df)}})
    return jobs


def run_one(job: dict, overrides: list[str]) -> dict:
    """Train one replicate in its own process (unless a finished one is there already)."""
    metrics, problem = read_metrics(job["out"])
    if problem or metrics.get("status") != "completed":
        argv = rerun_argv(job["source"], job["out"], [*overrides, f"trainer.seed={job['seed']}"], False)
        proc = subprocess.run([sys.executable, "-m", "charmlp.train", *argv], capture_output=True,
                              text=True, cwd=original_cwd(job["source"]), env={**os.environ, **ONE_THREAD})
        metrics, problem = read_metrics(job["out"])
        if proc.returncode != 0:
            problem = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    metric = read_config(job["out"]).get("optimized_metric")
    value = None if problem else objective_value(metrics, metric)
    return {**{k: v for k, v in job.items() if k not in ("source", "out")},
            "state": "COMPLETE" if value is not None else "FAIL", "value": value,
            "train_loss": metrics.get("train_loss"), "dev_loss": metrics.get("dev_loss"),
            "output_dir": str(job["out"]), "fail_reason": problem if value is None else None}


def run_all(jobs: list[dict], overrides: list[str], slots: int) -> list[dict]:
    done, lock = [], threading.Lock()

    def one(job):
        row = run_one(job, overrides)
        with lock:
            done.append(row)
            shown = f"{row['value']:.4f}" if row["value"] is not None else f"FAIL ({row['fail_reason']})"
            print(f"trial {row['number']} seed {row['seed']}: {shown}  ({len(done)}/{len(jobs)} done)",
                  flush=True)
        return row
    with ThreadPoolExecutor(max_workers=slots) as pool:  # threads wait; each run is a process
        return list(pool.map(one, jobs))


def summarize(runs: pd.DataFrame, minimize: bool = True) -> pd.DataFrame:
    """One row per trial: mean and std over its seeds, rank by the mean, the gap to the best
    mean, and `tie` where that gap is within the noise: twice the standard error of a
    difference of two means, from the seed std pooled over all trials."""
    ok = runs[runs["state"] == "COMPLETE"]
    params = [c for c in runs.columns if c.startswith("params_")]
    g = ok.groupby("number", sort=False)
    table = g.agg(sweep_value=("sweep_value", "first"), mean=("value", "mean"), std=("value", "std"),
                  n=("value", "size"), **{c: (c, "first") for c in params}).reset_index()
    table = table.sort_values("mean", ascending=minimize, kind="stable").reset_index(drop=True)
    pooled = math.sqrt(table["std"].pow(2).mean()) if (table["n"] > 1).any() else float("nan")
    noise = 2 * pooled * (2 / table["n"]).pow(0.5)
    table["gap"] = (table["mean"] - table["mean"].iloc[0]).abs() if len(table) else 0.0
    table["tie"] = (table.index > 0) & (table["gap"] < noise)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.attrs["noise_std"] = pooled
    return table.rename(columns={"number": "trial", **short_names(params)})


def write_runs(rows: list[dict], sweep_dir: Path) -> Path:
    """replicates.csv: one row per run, output_dir relative to the sweep dir."""
    df = pd.DataFrame(rows).sort_values(["number", "seed"], kind="stable")
    df["output_dir"] = [relative_dir(Path(p), sweep_dir) for p in df["output_dir"]]
    path = sweep_dir / REPLICATES_CSV
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def show(table: pd.DataFrame) -> str:
    view = table.copy()
    view["mean ± std"] = [f"{m:.4f} ± {s:.4f}" if s == s else f"{m:.4f}" for m, s in zip(view["mean"], view["std"])]
    view["sweep_value"] = view["sweep_value"].map(lambda v: f"{v:.4f}")
    view["gap"] = view["gap"].map(lambda v: f"{v:.4f}")
    view["tie"] = view["tie"].map(lambda t: "within noise" if t else "")
    first = ["rank", "trial", *[c for c in view.columns if c not in FIXED], "sweep_value", "mean ± std", "n"]
    return view[[*first, "gap", "tie"]].to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="charmlp-replicate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="a sweep dir (or any dir of runs charmlp-results reads)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every replicate")
    ap.add_argument("--top", type=int, default=3, help="how many of the best trials (default 3)")
    ap.add_argument("--seeds", type=int, default=3, help="init seeds per trial, 1..S (default 3)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one core each (default 2)")
    args = ap.parse_intermixed_args(argv)
    try:
        if min(args.top, args.seeds, args.jobs) < 1:
            raise CharmlpError("--top, --seeds and --jobs must be positive integers")
        path = Path(args.path)
        if not path.is_dir():
            raise CharmlpError(f"{args.path} is not a directory; fix: pass a sweep directory")
        df = collect(str(path))
        jobs = plan(df, args.top, args.seeds)
    except CharmlpError as e:
        print(f"charmlp-replicate: error: {e}", file=sys.stderr)
        return 2
    print(f"{len(jobs)} runs: top {args.top} trials x {args.seeds} seeds, {args.jobs} at once", flush=True)
    rows = run_all(jobs, args.overrides, args.jobs)
    csv_path = write_runs(rows, Path(df.attrs["root"]))
    table = summarize(pd.DataFrame(rows), directions(df)[0] == "minimize")
    print(f"\n{csv_path}\nseed noise (pooled std): {table.attrs['noise_std']:.4f}\n{show(table)}")
    return 0 if all(r["state"] == "COMPLETE" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
