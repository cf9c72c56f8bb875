"""report.html: one self-contained page per sweep (figures embedded as base64 PNG, links
only to files beside it), readable in any browser without a server."""
import base64
import html
import os
from pathlib import Path

import pandas as pd
import yaml

from ..atomic import write_text
from ..rundir import BEST_YAML, RESULTS_CSV
from .outputs import best_record
from .tables import best_trial, completed, directions, leaderboard, state_counts, terminal_table

REPORT = "report.html"
REPLICATES_CSV = "replicates.csv"
CAPTIONS = {
    "history": "Optimization history: each trial's value, the best so far; the y-axis is focused "
               "on the useful range, with trials beyond it drawn at the edge.",
    "curves": "Learning curves: dev loss against step for the top trials and the pruned ones.",
    "importances": "Parameter importances (fANOVA) for the objective.",
    "slice": "Objective against each of the most important parameters (colour: trial number).",
    "contour": "Objective over the two most important parameters.",
    "heatmap": "Grid sweep: min dev loss per cell.",
    "pareto": "Pareto front of the objectives.",
}
STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
pre{background:#f4f4f4;padding:.8em;overflow-x:auto}img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:14px;margin-bottom:1.5em}"""


def write_report(df: pd.DataFrame, out_dir: str | os.PathLike, figures: dict[str, Path],
                 skipped: dict[str, str], top: int = 10) -> Path:
    out = Path(out_dir)
    title = f"sweep {df.attrs.get('study_name') or df.attrs.get('root') or out.resolve().name}"
    body = [f"<h1>{_e(title)}</h1>", _summary(df, out), "<h2>Leaderboard</h2>",
            _leaderboard(df, top), _best(df), _replicates(df, out), "<h2>Figures</h2>"]
    body += [_figure(name, path) for name, path in figures.items()]
    body += [f"<p>No {name} figure: {_e(why)}.</p>" for name, why in skipped.items()]
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = out / REPORT
    write_text(path, page)
    return path


def _e(text) -> str:
    return html.escape(str(text))


def _summary(df: pd.DataFrame, out: Path) -> str:
    links = [f"<a href='{name}'>{name}</a>" for name in (RESULTS_CSV, BEST_YAML, REPLICATES_CSV)
             if (out / name).is_file()]
    return f"<p>{len(df)} trials ({_e(state_counts(df))}). Files: {', '.join(links) or 'none'}.</p>"


def _leaderboard(df: pd.DataFrame, top: int) -> str:
    board = leaderboard(df, top)
    if board.empty:
        return "<p>No COMPLETE trial yet.</p>"
    return f"<pre>{_e(terminal_table(df, board, 'text', width=10_000))}</pre>"


def _best(df: pd.DataFrame) -> str:
    if completed(df).empty:
        return ""
    record = best_record(df, best_trial(df))
    config = yaml.safe_dump(record.pop("config"), sort_keys=False)
    return (f"<h2>Best trial: {record['number']}</h2><p>Rerun it exactly (add <code>--test</code> "
            f"for its test loss):</p><pre>{_e(record['rerun'])}</pre>"
            f"<p>Overrides: <code>{_e(' '.join(record['overrides']))}</code></p>"
            f"<details><summary>Full config</summary><pre>{_e(config)}</pre></details>")


def _replicates(df: pd.DataFrame, out: Path) -> str:
    """The seed replicates' summary, when charmlp-replicate has written them here."""
    from ..replicate import show, summarize  # one summary rule for the command and the report
    try:
        runs = pd.read_csv(out / REPLICATES_CSV)
    except (OSError, ValueError):
        return ""
    table = summarize(runs, directions(df)[0] == "minimize")
    return ("<h2>Seed replicates</h2><p>The top trials rerun with other init seeds, ranked by "
            "the mean; a tie is a gap to the best mean smaller than the seed noise.</p>"
            f"<pre>{_e(show(table))}</pre>")


def _figure(name: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f"<figure><img alt='{name}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(CAPTIONS.get(name, name))}</figcaption></figure>")
