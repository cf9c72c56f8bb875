"""Open an Optuna storage from a URL, with one clear error when it can't be opened."""
import os
from pathlib import Path

import optuna

from ..errors import CharmlpError

JOURNAL = "journal:///"  # journal:///path/to/study.log -> JournalStorage on a shared filesystem


def default_url(sweep_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / 'study.db'}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    try:
        if url.startswith(JOURNAL):
            path = Path("/" + url[len(JOURNAL):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            # Several processes may share one SQLite file: wait for locks instead of failing.
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        return optuna.storages.RDBStorage(url)
    except Exception as e:  # sqlalchemy raises many types; the user needs one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CharmlpError(f"cannot open Optuna storage {url!r} ({msg}); fix: pass a working "
                           "hydra.sweeper.storage=URL (sqlite:///PATH, postgresql://..., journal:///PATH)") from None
