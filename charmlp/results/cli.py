"""charmlp-results: one table of every trial of a sweep, whether it lives in an Optuna storage,
an Optuna sweep dir, a Hydra multirun dir or any tree of run dirs; the leaderboard, the pivot
(grid sweeps), results.csv, best.yaml, and with --plot the figures and report.html.

    charmlp-results outputs/sweeps/embed_hidden --plot
    charmlp-results sqlite:///sweeps.db --study names_mlp --format markdown

`pandas.read_csv(".../results.csv")` is all a reader needs: one row per trial, sorted by
number, failed, pruned and unfinished trials included with their state."""
import argparse
import sys
from pathlib import Path

import pandas as pd

from ..errors import CharmlpError
from .figures import plot
from .frame import Sweep, open_sweep
from .outputs import write_outputs
from .report import write_report
from .tables import leaderboard, pivot, render, short_names, state_counts, terminal_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="charmlp-results", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="sweep dir, dir of runs, or Optuna storage URL (sqlite:///x.db)")
    ap.add_argument("--study", help="study name (needed when the storage holds several)")
    ap.add_argument("--out", help="where results.csv/best.yaml go (default: PATH if a dir, else .)")
    ap.add_argument("--top", type=int, default=10, help="leaderboard rows (default 10)")
    ap.add_argument("--format", choices=("text", "markdown"), default="text")
    ap.add_argument("--plot", action="store_true", help="also write the figures and report.html")
    args = ap.parse_args(argv)
    try:
        if args.top < 1:
            raise CharmlpError(f"--top {args.top} must be at least 1; fix: pass --top 1 or more")
        sweep = open_sweep(args.path, args.study)
        if sweep.df.empty:
            raise CharmlpError(f"no trials found in {args.path}; fix: run the sweep first, or pass "
                               "the sweep that has them")
        out = Path(args.out) if args.out else default_out(args.path)
        paths, skipped = write_all(sweep, out, args.plot, args.top)
    except CharmlpError as e:
        print(f"charmlp-results: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    print(summary(sweep.df, paths, skipped, args.top, args.format))
    return 0


def default_out(path: str) -> Path:
    return Path(path) if "://" not in path and Path(path).is_dir() else Path.cwd()


def write_all(sweep: Sweep, out: Path, with_plots: bool, top: int):
    try:
        paths, skipped = write_outputs(sweep.df, out), {}
        if with_plots:
            figures, skipped = plot(sweep.df, out, sweep.study)
            paths = {**paths, **figures, "report": write_report(sweep.df, out, figures, skipped, top)}
        return paths, skipped
    except OSError as e:
        raise CharmlpError(f"cannot write into {out} ({e.strerror or e}); fix: pass --out DIR "
                           "that you can write to") from None


def summary(df: pd.DataFrame, paths: dict, skipped: dict, top: int, fmt: str) -> str:
    lines = [f"{name}: {path}" for name, path in paths.items()]
    lines += [f"{name}: skipped ({why})" for name, why in skipped.items()]
    lines += ["", f"{len(df)} trials ({state_counts(df)}); top {top} by value:"]
    board = leaderboard(df, top)
    lines.append(terminal_table(df, board, fmt) if not board.empty else "(no COMPLETE trial yet)")
    if df.attrs.get("grid"):
        lines += ["", *grid_table(df, fmt)]
    return "\n".join(lines)


def grid_table(df: pd.DataFrame, fmt: str) -> list[str]:
    """The pivot of a grid sweep: min dev loss per cell of its first two parameters."""
    table = pivot(df)
    if table.empty:
        return [table.attrs["message"]]
    names = short_names([table.index.name, table.columns.name])
    heading = (f"min dev loss, {names[table.index.name]} (rows) x "
               f"{names[table.columns.name]} (columns):")
    table = table.round(4)
    table.index.name, table.columns.name = names[table.index.name], None
    return [heading, render(table.reset_index().astype(object).fillna("not measured"), fmt)]
