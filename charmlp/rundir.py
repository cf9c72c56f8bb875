"""The run-directory layout, the ground floor every other module reads runs through.

A run dir (outputs/runs/<time>/, or <sweep dir>/trial_NNNN/) holds `.hydra/` (the composed
config, Hydra's own config and the task overrides), `metrics.json`, `history.csv`, the
checkpoint `model.pt` and `train.log`. A sweep dir holds its trial dirs, `study.json` (where
its Optuna study lives), `results.csv` and `best.yaml`. Nothing here imports the rest of
charmlp, so the sweeper, results, rerun and sample can all use it."""
import json
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

METRICS, HISTORY, CHECKPOINT, LOG = "metrics.json", "history.csv", "model.pt", "train.log"
STUDY_JSON, RESULTS_CSV, BEST_YAML = "study.json", "results.csv", "best.yaml"
TRIAL_PREFIX = "trial_"
# Metrics a trial's record carries into the study (user attrs) and results.csv.
METRIC_KEYS = ("train_loss", "dev_loss", "test_loss", "num_params", "steps", "steps_done",
               "steps_per_sec", "wall_time")
# Yaml's C loader is ~10x faster; it matters when a tree holds thousands of runs.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def trial_dirname(number: int) -> str:
    return f"{TRIAL_PREFIX}{number:04d}"


def trial_number(name: str) -> int | None:
    """trial_0007 -> 7; anything else -> None."""
    digits = name[len(TRIAL_PREFIX):]
    return int(digits) if name.startswith(TRIAL_PREFIX) and digits.isdigit() else None


def load_yaml(path: Path) -> Any:
    """The parsed file, or None when it is missing or half-written (runs may be live)."""
    try:
        with open(path) as f:
            return yaml.load(f, Loader=_Loader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None


def read_metrics(run_dir: Path) -> tuple[dict, str | None]:
    """(metrics, problem): problem says why there are none (crashed, killed, truncated)."""
    path = Path(run_dir) / METRICS
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, "no metrics.json: the run crashed, was killed, or is still running"
    except (OSError, ValueError) as e:
        return {}, f"metrics.json is unreadable ({type(e).__name__}): the run was cut off while writing it"
    if not isinstance(metrics, dict):
        return {}, "metrics.json is not a JSON object"
    return metrics, None


def is_task_override(override: str) -> bool:
    """True for the user's own overrides; False for hydra.* / hydra/... ones."""
    key = override.lstrip("+~").split("=", 1)[0]
    return not (key == "hydra" or key.startswith(("hydra.", "hydra/")))


def task_overrides(overrides: Iterable[str]) -> list[str]:
    return [str(o) for o in overrides if is_task_override(str(o))]


def read_overrides(run_dir: Path) -> list[str]:
    """The run's task overrides as typed on the command line (hydra.* ones dropped)."""
    overrides = load_yaml(Path(run_dir) / ".hydra" / "overrides.yaml")
    return task_overrides(overrides) if isinstance(overrides, list) else []


def read_config(run_dir: Path) -> dict:
    config = load_yaml(Path(run_dir) / ".hydra" / "config.yaml")
    return config if isinstance(config, dict) else {}


def finite(x: Any) -> float | None:
    """x as a float when it is a finite number (strings and bools are not), else None."""
    if isinstance(x, (bool, str, bytes)):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def moved(path: Path, sweep_dir: Path) -> Path:
    """A path recorded in a sweep, found in sweep_dir: relative ones are relative to it, and
    an absolute one that is gone is looked for by its name (the sweep dir was moved)."""
    path, sweep_dir = Path(path), Path(sweep_dir)
    if not path.is_absolute():
        return sweep_dir / path
    return path if path.exists() or not (sweep_dir / path.name).exists() else sweep_dir / path.name


SQLITE = "sqlite:///"  # sqlite:///path/to/study.db (the default, study.db in the sweep dir)
JOURNAL = "journal:///"  # journal:///path/to/study.log -> JournalStorage on a shared filesystem


def journal_path(url: str) -> Path:
    """journal:///abs/path.log -> /abs/path.log (as file:// URLs; journal:////abs works too)."""
    return Path("/" + url[len(JOURNAL):].lstrip("/"))


def storage_file(url: str) -> Path | None:
    """The file a SQLite or journal storage keeps its studies in; None for a database server."""
    if url.startswith(SQLITE):
        return Path(url[len(SQLITE):])
    return journal_path(url) if url.startswith(JOURNAL) else None


def resolve_storage(url: str, sweep_dir: Path) -> str:
    """A SQLite or journal URL as study.json records it, made absolute against the sweep dir:
    the default is stored as sqlite:///study.db so that sweep dirs can be moved, and an
    absolute path that no longer exists falls back to the same name in the sweep dir (a
    journal file kept in it, say). Others unchanged."""
    if url.startswith(JOURNAL):
        path = journal_path(url)
        return url if path.is_file() else f"{JOURNAL}{moved(path, sweep_dir)}"
    if not url.startswith(SQLITE):
        return url
    path = storage_file(url)
    if not path.is_absolute() or not path.is_file():
        path = moved(path, sweep_dir)
    return f"{SQLITE}{path.resolve()}"


def read_study_json(sweep_dir: Path) -> tuple[str, str | None] | None:
    """(storage URL, study name) of the sweep that wrote sweep_dir, or None without a
    readable study.json."""
    try:
        info = json.loads((Path(sweep_dir) / STUDY_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("storage"), str):
        return None
    return resolve_storage(info["storage"], Path(sweep_dir)), info.get("study_name")
