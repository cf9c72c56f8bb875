"""Results of sweeps and runs, one module per concern:

rundirs   rows from trees of run dirs (multiruns, single runs); history.csv curves
studies   rows from an Optuna study, paths resolved against the sweep dir
frame     the typed results table, and collect()/open_sweep() that pick the source
tables    leaderboard, best trial, grid pivot, the 120-column terminal table
outputs   results.csv and best.yaml, written atomically
plots     figures from the table (history, learning curves, grid heatmap)
study_plots  figures from the study via optuna.visualization.matplotlib
figures   which figures a sweep gets, written as PNG
report    report.html, self-contained
cli       charmlp-results

The sweeper imports collect and write_outputs from here after every batch; the CLI
(charmlp.results.cli:main) is imported only by the command."""
from .figures import plot
from .frame import collect, open_sweep, to_frame
from .outputs import write_outputs
from .tables import best_trial, leaderboard, pivot

__all__ = ["best_trial", "collect", "leaderboard", "main", "open_sweep", "pivot", "plot", "to_frame",
           "write_outputs"]


def main(argv: list[str] | None = None) -> int:
    """charmlp-results (the CLI module is loaded only when the command runs)."""
    from .cli import main as cli_main
    return cli_main(argv)
