"""Views of the results table: the leaderboard, the best trial, the pivot (grid sweeps only),
and the terminal rendering that fits 120 columns."""
import pandas as pd

from ..errors import CharmlpError
from .rundirs import COMPLETE

PIVOT_PAIR = ("params_model.n_embd", "params_model.n_hidden")
NOT_MEASURED = "not measured"
WIDTH = 120
# Terminal columns: (results column, heading, decimals); None: shown as it is.
SHOWN = [("train_loss", "train", 4), ("dev_loss", "dev", 4), ("test_loss", "test", 4),
         ("num_params", "weights", None), ("steps_per_sec", "steps/s", 0), ("output_dir", "dir", None)]
DROP_FIRST = ["steps_per_sec", "num_params", "train_loss", "output_dir"]  # when too wide


def objectives(df: pd.DataFrame) -> list[str]:
    """The value columns: ['value'], or ['values_0', 'values_1', ...] for several objectives."""
    return [c for c in df.columns if c.startswith("values_")] or ["value"]


def directions(df: pd.DataFrame) -> list[str]:
    return df.attrs.get("directions") or ["minimize"] * len(objectives(df))


def completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["state"] == COMPLETE) & df[objectives(df)].notna().all(axis=1)]


def leaderboard(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The COMPLETE trials, best first (ties: earlier trial first). With several objectives:
    the Pareto front first, each part ordered by the first objective."""
    first = objectives(df)[0]
    keys, ascending = [first, "number"], [directions(df)[0] == "minimize", True]
    if "pareto" in df.columns:
        keys, ascending = ["pareto", *keys], [False, *ascending]
    done = completed(df).sort_values(keys, ascending=ascending, kind="stable")
    return done.head(top).reset_index(drop=True)


def state_counts(df: pd.DataFrame) -> str:
    """'12 COMPLETE, 3 PRUNED, 1 FAIL'."""
    return ", ".join(f"{n} {s}" for s, n in df["state"].value_counts().items())


def best_trial(df: pd.DataFrame) -> pd.Series:
    board = leaderboard(df, top=1)
    if board.empty:
        raise CharmlpError(f"no COMPLETE trial yet ({state_counts(df) or 'no trials'}); fix: look at fail_reason in "
                           "results.csv, fix the cause, and rerun or resume the sweep")
    return board.iloc[0]


def param_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("params_")]


def varying_params(df: pd.DataFrame) -> list[str]:
    """params_* columns that differ between trials: a multirun's fixed overrides (data.path=...)
    are params too, but only crowd the leaderboard. All of them when nothing varies."""
    params = param_columns(df)
    varying = [c for c in params if df[c].astype(str).nunique() > 1]
    return varying or params


def grid_axes(df: pd.DataFrame) -> tuple[str, str] | None:
    """The pivot's (rows, columns): n_embd x n_hidden when both vary, else the first two."""
    varying = varying_params(df)
    if all(c in varying for c in PIVOT_PAIR):
        return PIVOT_PAIR
    return (varying[0], varying[1]) if len(varying) >= 2 else None


def pivot(df: pd.DataFrame, rows: str | None = None, cols: str | None = None,
          value: str = "dev_loss") -> pd.DataFrame:
    """Min `value` per (rows, cols) cell over COMPLETE trials. When it can't be built, an
    empty frame whose attrs['message'] says why (the CLI prints it)."""
    if rows is None or cols is None:
        axes = grid_axes(df)
        if axes is None:
            return _empty_pivot("no pivot: fewer than two parameters vary")
        rows, cols = axes
    missing = [c for c in (rows, cols, value) if c not in df.columns]
    if missing:
        return _empty_pivot(f"no {rows} x {cols} table: this sweep has no {', '.join(missing)} column")
    done = completed(df).dropna(subset=[rows, cols, value])
    if done.empty:
        return _empty_pivot(f"no {rows} x {cols} table: no COMPLETE trial has all of them")
    return done.pivot_table(index=rows, columns=cols, values=value, aggfunc="min").sort_index()


def _empty_pivot(message: str) -> pd.DataFrame:
    table = pd.DataFrame()
    table.attrs["message"] = message
    return table


def short_names(columns: list[str]) -> dict[str, str]:
    """params_model.n_embd -> n_embd, params_optimizer/schedule -> schedule; the full key
    where two params would share a short name."""
    keys = {c: c.removeprefix("params_") for c in columns}
    short = {c: k.replace("/", ".").rsplit(".", 1)[-1] for c, k in keys.items()}
    clash = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {c: keys[c] if short[c] in clash else short[c] for c in columns}


def terminal_table(df: pd.DataFrame, board: pd.DataFrame, fmt: str, width: int = WIDTH) -> str:
    """The leaderboard as text (or markdown) no wider than `width`: short param names,
    relative dirs, 'not measured' for a missing number; the least useful columns go first."""
    params = varying_params(df)
    cols = ["number", *objectives(df), *(["pareto"] if "pareto" in df.columns else []), *params,
            *(c for c, _, _ in SHOWN if c in board.columns)]
    while True:
        text = render(_cells(board[cols], params), fmt)
        drop = [c for c in DROP_FIRST if c in cols]
        if max(map(len, text.splitlines())) <= width or not drop:
            return text
        cols.remove(drop[0])


def _cells(board: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    names = {**short_names(params), **{c: h for c, h, _ in SHOWN}}
    decimals = {c: d for c, _, d in SHOWN} | {c: 4 for c in board.columns if c.startswith("value")}
    view = pd.DataFrame({names.get(c, c): board[c].map(lambda x, c=c: _cell(x, decimals.get(c)))
                         for c in board.columns})
    return view


def _cell(x, decimals: int | None) -> str:
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return NOT_MEASURED
    if isinstance(x, float):
        if decimals is None or abs(x) >= 1000:  # an lr as 0.0326, a num_params objective whole
            return f"{x:.4g}" if abs(x) < 1000 else f"{x:.0f}"
        return f"{x:.{decimals}f}"
    return str(x)


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "markdown":  # cells are formatted already: 2.1000 stays 2.1000
        return table.to_markdown(index=False, disable_numparse=True, colalign=["right"] * table.shape[1])
    return table.to_string(index=False)
