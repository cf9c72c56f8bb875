"""Rows from an Optuna study: its storage opened read-only in spirit (a missing file is an
error, never a new empty study), paths resolved against the sweep dir so a moved or copied
sweep dir still gives its table."""
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .. import rundir
from ..errors import CharmlpError
from ..rundir import SQLITE, STUDY_JSON, read_metrics, read_overrides, storage_file, trial_dirname
from .rundirs import METRIC_COLUMNS, iso, relative_dir, run_metrics

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


def missing_file(url: str) -> bool:
    """Whether `url` is a SQLite or journal storage whose file is not there."""
    path = storage_file(url)
    return path is not None and not path.is_file()


def open_study_storage(url: str):
    """An existing storage. A missing SQLite/journal file is an error here, not a new empty
    storage: opening would create it, and a typo would silently show zero trials."""
    from ..sweep.storage import open_storage
    if missing_file(url):
        raise CharmlpError(f"cannot open Optuna storage {url!r} (no such file); {STORAGE_FIX}")
    try:
        return open_storage(url)
    except CharmlpError as e:  # its fix names hydra.sweeper.storage; a reader needs ours
        raise CharmlpError(f"{str(e).split('; fix:')[0]}; {STORAGE_FIX}") from None


def load_study(url: str, study_name: str | None):
    import optuna
    from ..sweep.storage import redact  # messages never show a database password
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


def read_study_json(sweep_dir: Path) -> tuple[str, str | None]:
    """(storage URL, study name) from the sweep dir's study.json, SQLite resolved beside it."""
    found = rundir.read_study_json(sweep_dir)
    if found is None:
        raise CharmlpError(f"{sweep_dir / STUDY_JSON} is unreadable; fix: pass the study's storage "
                           "URL instead: charmlp-results sqlite:///PATH/study.db --study NAME")
    return found


def sweep_dir_of_url(url: str) -> Path | None:
    """The sweep dir of a default SQLite storage (study.db beside study.json), else None."""
    if url.startswith(SQLITE):
        parent = Path(url[len(SQLITE):]).resolve().parent
        return parent if (parent / STUDY_JSON).is_file() else None
    return None


def trial_run_dir(trial, sweep_dir: Path | None) -> Path | None:
    """The trial's run dir: from its output_dir attr (set once it finished), else by name."""
    out = trial.user_attrs.get("output_dir")
    if isinstance(out, str) and out:
        return rundir.moved(Path(out), sweep_dir) if sweep_dir else Path(out)
    guess = sweep_dir / trial_dirname(trial.number) if sweep_dir else None
    return guess if guess is not None and guess.is_dir() else None


def trial_row(trial, sweep_dir: Path | None, n_objectives: int) -> dict:
    """One results row: the study's record first, gaps filled from the trial's run dir."""
    attrs = trial.user_attrs
    run_dir = trial_run_dir(trial, sweep_dir)
    from_dir = run_metrics(read_metrics(run_dir)[0]) if run_dir else {}
    overrides = attrs.get("overrides")
    if not isinstance(overrides, list):
        overrides = read_overrides(run_dir) if run_dir else []
    metrics = {k: attrs[k] if k in attrs else from_dir.get(k) for k in METRIC_COLUMNS}
    if metrics["dev_loss"] is None and trial.intermediate_values:  # pruned: its last report
        metrics["dev_loss"] = trial.intermediate_values[max(trial.intermediate_values)]
    return {"number": trial.number, "state": trial.state.name, **objective_values(trial, n_objectives),
            **{f"params_{k}": v for k, v in trial.params.items()}, **metrics,
            "duration_s": trial.duration.total_seconds() if trial.duration else None,
            "datetime_start": iso(trial.datetime_start),
            "datetime_complete": iso(trial.datetime_complete),
            "output_dir": relative_dir(run_dir, sweep_dir) if run_dir else None,
            "overrides": " ".join(map(str, overrides)),
            "fail_reason": attrs.get("fail_reason")}


def objective_values(trial, n_objectives: int) -> dict:
    """{'value': v} for one objective; {'values_0': ..., 'values_1': ...} for several."""
    values = trial.values or [None] * n_objectives
    if n_objectives == 1:
        return {"value": values[0]}
    return {f"values_{i}": v for i, v in enumerate(values)}


def rows_from_study(study, sweep_dir: Path | None) -> list[dict]:
    with storage_errors(f"cannot read the trials of study {study.study_name!r}"):
        trials = study.get_trials(deepcopy=False)
    n = len(study.directions)
    rows = [trial_row(t, sweep_dir, n) for t in trials]
    if n > 1:  # the Pareto front, as Optuna computes it
        front = {t.number for t in study.best_trials}
        for row in rows:
            row["pareto"] = row["number"] in front
    return rows


def is_grid_study(study) -> bool:
    """GridSampler marks each trial it proposes with a grid_id system attr."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.params]
    return bool(trials) and all("grid_id" in t.system_attrs for t in trials)
