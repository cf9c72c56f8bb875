"""Figures drawn by optuna.visualization.matplotlib from the study itself: parameter
importances, slices, a contour of the two most important parameters, the Pareto front.
Each raises ValueError with the reason when the study can't support it."""
import warnings
from contextlib import contextmanager

from .tables import short_names

MAX_SLICES = 4


@contextmanager
def optuna_style():
    """Optuna's plots call plt.style.use('ggplot'): keep that from leaking into later figures,
    and keep its experimental-feature warnings off the user's terminal."""
    import matplotlib.pyplot as plt
    with plt.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_objective(study):
    """Optuna's plots need one target in a multi-objective study: the first objective."""
    return (lambda t: t.values[0]) if len(study.directions) > 1 else None


def _complete(study) -> list:
    from optuna.trial import TrialState
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _figure_of(axes, size):
    """The figure, resized, with short param names and no crowded minor labels on log axes.
    Its layout stays Optuna's: re-laying out would push its colorbars over the axes."""
    axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax in axes:
        ax.set_xlabel(_short(ax.get_xlabel()))
        ax.set_ylabel(_short(ax.get_ylabel()))
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                _plain_log_ticks(axis)
    fig = axes[0].figure
    fig.set_size_inches(*size)
    return fig


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 2, (3,) 5 x 10^k written plainly (300, 0.05), fewer on a wider span: a log
    axis spanning less than a decade otherwise shows no label at all, or crowded minor ones."""
    import math
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    lo, hi = sorted(axis.get_view_interval())
    decades = math.log10(hi / lo) if lo > 0 else 3
    subs = (1, 2, 3, 5) if decades < 1.2 else (1, 2, 5) if decades < 2.5 else (1,)
    axis.set_major_locator(LogLocator(subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _short(label: str) -> str:
    """A param's short name (model.n_embd -> n_embd); any other label as it is."""
    return short_names([f"params_{label}"])[f"params_{label}"] if "." in label or "/" in label else label


def importance_order(study) -> list[str]:
    """The searched params, most important first (fANOVA); search order when that fails."""
    from optuna.importance import get_param_importances
    params = searched(study)
    if len(params) < 2 or len(_complete(study)) < 2:
        return params
    try:
        with optuna_style():
            return list(get_param_importances(study, target=_first_objective(study)))
    except (ValueError, RuntimeError):
        return params


def searched(study) -> list[str]:
    """Params that take more than one value over the COMPLETE trials."""
    seen: dict[str, set] = {}
    for t in _complete(study):
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    return [k for k, vs in seen.items() if len(vs) > 1]


def importances_figure(study):
    from optuna.visualization.matplotlib import plot_param_importances
    if len(_complete(study)) < 2 or not searched(study):
        raise ValueError("needs two COMPLETE trials that differ in a parameter")
    with optuna_style():
        ax = plot_param_importances(study, target=_first_objective(study), target_name="objective")
        ax.set_yticks(ax.get_yticks(), [_short(t.get_text()) for t in ax.get_yticklabels()])
        fig = _figure_of(ax, (8, 1.8 + 0.5 * len(searched(study))))
        fig.tight_layout()  # no colorbar here: make room for the labels
        return fig


def slice_figure(study):
    from optuna.visualization.matplotlib import plot_slice
    params = importance_order(study)[:MAX_SLICES]
    if not params:
        raise ValueError("no parameter takes more than one value in the COMPLETE trials")
    with optuna_style():
        axes = plot_slice(study, params=params, target=_first_objective(study), target_name="objective")
        return _figure_of(axes, (3.6 * len(params) + 1.5, 4.2))


def contour_figure(study):
    from optuna.visualization.matplotlib import plot_contour
    params = importance_order(study)[:2]
    if len(params) < 2 or len(_complete(study)) < 3:
        raise ValueError("needs two searched parameters and three COMPLETE trials")
    with optuna_style():
        ax = plot_contour(study, params=params, target=_first_objective(study), target_name="objective")
        return _figure_of(ax, (7, 5.5))


def pareto_figure(study, target_names: list[str]):
    from optuna.visualization.matplotlib import plot_pareto_front
    if len(study.directions) != 2 or not _complete(study):
        raise ValueError("needs a two-objective study with a COMPLETE trial")
    with optuna_style():
        ax = plot_pareto_front(study, target_names=target_names)
        return _figure_of(ax, (7, 5))
