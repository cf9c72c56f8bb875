"""Open an Optuna storage from a URL, with one clear error when it can't be opened."""
import functools
import importlib.util
import os
from pathlib import Path

import optuna

from ..errors import CharmlpError

JOURNAL = "journal:///"  # journal:///path/to/study.log -> JournalStorage on a shared filesystem


def default_url(sweep_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / 'study.db'}"


def journal_path(url: str) -> Path:
    """journal:///abs/path.log -> /abs/path.log (as file:// URLs; journal:////abs works too)."""
    return Path("/" + url[len(JOURNAL):].lstrip("/"))


@functools.lru_cache(maxsize=8)
def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at url, opened once per process: opening checks the schema (~0.3 s), and a
    sweep reopens it for every results rewrite and every trial's reports."""
    try:
        if url.startswith(JOURNAL):
            path = journal_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            # Several processes may share one SQLite file: wait for locks instead of failing.
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        return optuna.storages.RDBStorage(_with_driver(url))
    except Exception as e:  # sqlalchemy raises many types; the user needs one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CharmlpError(f"cannot open Optuna storage {redact(url)!r} ({msg}); fix: pass a working "
                           "hydra.sweeper.storage=URL (sqlite:///PATH, postgresql://..., journal:///PATH)") from None


def _with_driver(url: str) -> str:
    """postgresql://... with the driver that is installed: SQLAlchemy 2.1 picks psycopg (3)
    for a bare postgresql://, while charmlp's `postgres` extra installs psycopg2."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return url


def redact(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not (sep and at and ":" in creds):
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
