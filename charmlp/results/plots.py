"""Figures drawn from the results table, so they work for any source (study or run dirs):
the optimization history, the learning curves, and the heatmap of a grid sweep."""
import numpy as np
import pandas as pd

from .frame import run_dir
from .rundirs import read_dev_curve
from .tables import (completed, directions, grid_axes, leaderboard, objectives, pivot, short_names,
                     state_counts)

SIZE = (8, 5)
TOP_CURVES = 5


def figure(size=SIZE, ncols: int = 1):
    # Figure without pyplot: no global backend switch, no GUI, safe in sweeper workers.
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(1, ncols) if ncols > 1 else fig.add_subplot()


def focus(values: np.ndarray, minimize: bool = True) -> tuple[float, float]:
    """A y-range around where the decision is made: from the best value to the median plus
    twice its distance to the best. Outliers beyond it are drawn at the edge, not zoomed out."""
    values = np.sort(values) if minimize else np.sort(-values)
    best, median = values[0], float(np.median(values))
    spread = median - best
    far = min(values[-1], median + 2 * spread) if spread > 0 else values[-1]
    pad = 0.06 * (far - best) or 0.01 * max(abs(best), 1e-3)
    lo, hi = best - pad, far + pad
    return (lo, hi) if minimize else (-hi, -lo)


def history_figure(df: pd.DataFrame):
    """Each trial's value by number, the best so far, pruned and failed trials marked."""
    fig, ax = figure((9.5, 5))
    col, minimize = objectives(df)[0], directions(df)[0] == "minimize"
    done = completed(df).sort_values("number")
    if done.empty:
        return say(fig, ax, "no COMPLETE trial yet")
    x, y = done["number"].to_numpy(float), done[col].to_numpy(float)
    lo, hi = focus(y, minimize)
    inside = (y >= lo) & (y <= hi)
    ax.plot(x[inside], y[inside], "o", color="C0", alpha=0.7, label="complete")
    best = np.minimum.accumulate(y) if minimize else np.maximum.accumulate(y)
    ax.step(x, best, where="post", color="C3", label="best so far")
    _mark_outliers(ax, x[~inside], y[~inside], lo, hi)
    _mark_others(ax, df, col, lo, hi)
    ax.set_ylim(lo, hi + 0.03 * (hi - lo))  # room for the markers drawn at the edge
    ax.set_title(f"{len(df)} trials ({state_counts(df)})")
    ax.set_xlabel("trial number")
    ax.set_ylabel(col if col != "value" else "value (optimized metric)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside, not over, points
    return fig


def _mark_outliers(ax, x, y, lo, hi) -> None:
    if len(y) == 0:
        return
    at = np.where(y > hi, hi, lo)
    ax.plot(x, at, "^" if (y > hi).all() else "v", color="C1", clip_on=False, zorder=5,
            label=f"{len(y)} outside the range (worst {y.max() if (y > hi).all() else y.min():.4f})")


def _mark_others(ax, df, col, lo, hi) -> None:
    """Pruned trials at their last reported value (clipped), failed ones on the x-axis."""
    pruned = df[df["state"] == "PRUNED"]
    v = pruned[col] if col in pruned else pd.Series(dtype=float)
    v = v.fillna(pruned["dev_loss"]).dropna() if len(pruned) else v
    if len(v):
        ax.plot(pruned.loc[v.index, "number"].astype(float), v.clip(lo, hi), "x", color="grey",
                clip_on=False, label=f"pruned ({len(pruned)}), at last report")
    failed = df[df["state"] == "FAIL"]["number"].astype(float)
    if len(failed):
        ax.plot(failed, [lo] * len(failed), "|", color="C3", markersize=14, clip_on=False,
                label=f"failed ({len(failed)})")


def curves_figure(df: pd.DataFrame, study=None):
    """Dev loss against step for the top trials and the pruned ones; the right panel zooms
    into the second half of training, where the top trials separate."""
    fig, (full, zoom) = figure((11, 5), ncols=2)
    top = leaderboard(df, TOP_CURVES)
    pruned = df[df["state"] == "PRUNED"]
    drawn = 0
    for i, row in enumerate(top.itertuples()):
        drawn += _curve(df, row, study, (full, zoom), dict(color=f"C{i}", label=_label(df, row)))
    for j, row in enumerate(pruned.itertuples()):
        drawn += _curve(df, row, study, (full, zoom), dict(color="grey", ls="--", lw=1, alpha=0.7,
                                                           label=f"pruned ({len(pruned)})" if j == 0 else None))
    if not drawn:
        raise ValueError("no top or pruned trial has a dev-loss history (history.csv) yet")
    full.set_title(f"dev loss: top {len(top)} trials" + (f" and {len(pruned)} pruned" if len(pruned) else ""))
    zoom.set_title("second half of training (zoom)")
    _zoom(zoom)
    for ax in (full, zoom):
        ax.set_xlabel("step")
        ax.set_ylabel("dev loss")
    full.legend(fontsize="small")
    return fig


def _label(df, row) -> str:
    value = getattr(row, objectives(df)[0])
    return f"trial {row.number}: {value:.4f}"


def _curve(df, row, study, axes, style) -> int:
    points = read_dev_curve(run_dir(df, row.output_dir)) if isinstance(row.output_dir, str) else []
    if not points and study is not None:  # a pruned trial may have only its reports
        points = sorted(study.trials[row.number].intermediate_values.items())
    if not points:
        return 0
    steps, dev = zip(*points)
    for ax in axes:
        ax.plot(steps, dev, marker=".", **style)
    return 1


def _zoom(ax) -> None:
    """Limit the zoom panel to the second half of the steps and the losses seen there (after
    the midpoint: a step schedule's drop often sits on it)."""
    xmax = max(max(line.get_xdata()) for line in ax.get_lines())
    ys = [y for line in ax.get_lines() for x, y in zip(line.get_xdata(), line.get_ydata()) if x > xmax / 2]
    ax.set_xlim(xmax / 2, xmax * 1.02)
    if ys:
        pad = 0.05 * (max(ys) - min(ys)) or 0.005
        ax.set_ylim(min(ys) - pad, max(ys) + pad)


def heatmap_figure(df: pd.DataFrame):
    """Min dev loss per cell of a grid sweep's two first parameters."""
    fig, ax = figure()
    table = pivot(df)
    if table.empty:
        return say(fig, ax, table.attrs.get("message", "nothing to show"))
    grid = table.to_numpy(dtype=float)
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    fig.colorbar(image, ax=ax, label="min dev loss")
    rows, cols = grid_axes(df)
    names = short_names([rows, cols])
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    ax.set_xlabel(names[cols])
    ax.set_ylabel(names[rows])
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):  # a cell without a COMPLETE trial stays empty
            ax.text(j, i, f"{v:.4f}", ha="center", va="center", color="w", fontsize="small",
                    bbox={"facecolor": "black", "alpha": 0.3, "linewidth": 0})
    ax.set_title(f"min dev loss per cell ({len(completed(df))} COMPLETE trials)")
    return fig


def say(fig, ax, message: str):
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return fig
