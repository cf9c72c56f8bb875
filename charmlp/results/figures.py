"""Which figures a sweep gets, and writing them: every sweep its history and learning curves;
a study its importances, slices and contour; a grid its heatmap (instead of the contour);
a multi-objective study its Pareto front. A figure the sweep can't support is skipped with
the reason, never drawn empty."""
import os
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..rundir import read_config
from . import plots, study_plots
from .frame import run_dir

DPI = 100


def plot(df: pd.DataFrame, out_dir: str | os.PathLike, study=None) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the sweep's figures into out_dir: ({name: path written}, {name: why skipped})."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = {}, {}
    for name, draw in chosen(df, study).items():
        try:
            fig = draw()
        except ValueError as e:
            skipped[name] = str(e)
            continue
        except ImportError as e:  # optuna's contour needs scipy
            skipped[name] = f"{e}; fix: pip install 'charmlp[plots]'"
            continue
        written[name] = save(fig, out / f"{name}.png")
    return written, skipped


def chosen(df: pd.DataFrame, study) -> dict:
    """name -> a function drawing that figure, for the figures this sweep gets."""
    figures = {"history": lambda: plots.history_figure(df),
               "curves": lambda: plots.curves_figure(df, study)}
    if df.attrs.get("grid"):
        figures["heatmap"] = lambda: plots.heatmap_figure(df)
    if study is None:
        return figures
    figures["importances"] = lambda: study_plots.importances_figure(study)
    figures["slice"] = lambda: study_plots.slice_figure(study)
    if not df.attrs.get("grid"):
        figures["contour"] = lambda: study_plots.contour_figure(study)
    if len(study.directions) > 1:
        figures["pareto"] = lambda: study_plots.pareto_figure(study, objective_names(df, study))
    return figures


def objective_names(df: pd.DataFrame, study) -> list[str]:
    """The metrics the objectives are: the study's metric names, else the optimized_metric
    list in a trial's saved config, else objective 0, 1, ..."""
    if getattr(study, "metric_names", None):
        return list(study.metric_names)
    for out in df["output_dir"].dropna():
        metric = read_config(run_dir(df, out)).get("optimized_metric")
        if isinstance(metric, list) and len(metric) == len(study.directions):
            return [str(m) for m in metric]
    return [f"objective {i}" for i in range(len(study.directions))]


def save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    _close(fig)
    return path


def _close(fig) -> None:
    """Optuna's figures belong to pyplot, which keeps them alive until closed."""
    import matplotlib.pyplot as plt
    if plt.fignum_exists(fig.number if hasattr(fig, "number") else -1):
        plt.close(fig)
