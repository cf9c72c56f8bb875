"""Open an Optuna storage from a URL, with one clear error when it can't be opened, safely
when many workers open the same new database at the same moment."""
import contextlib
import functools
import importlib.util
import os
import weakref
from pathlib import Path

import optuna
import sqlalchemy

from ..errors import CharmlpError
from ..rundir import JOURNAL, SQLITE, journal_path, storage_file


def default_url(sweep_dir: str | os.PathLike) -> str:
    return f"{SQLITE}{Path(sweep_dir).resolve() / 'study.db'}"


# What open_storage's cache holds now (weakly: an entry it evicts may still close), for
# forget_inherited; and, in a forked worker, what it inherited.
_opened: "weakref.WeakValueDictionary[str, optuna.storages.BaseStorage]" = weakref.WeakValueDictionary()
_inherited: list = []


def forget_inherited() -> None:
    """In a worker forked from the sweep process (launcher.prestart): open storages afresh.
    The parent's connections (a SQLite handle, a PostgreSQL socket) are its own to use and
    to close; they stay referenced here, so this process never closes them either."""
    _inherited.extend(_opened.values())
    _opened.clear()
    open_storage.cache_clear()


@functools.lru_cache(maxsize=8)
def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at url, opened once per process: opening checks the schema (~0.3 s), and a
    sweep reopens it for every results rewrite and every trial's reports."""
    _opened[url] = storage = _open(url)
    return storage


def _open(url: str) -> optuna.storages.BaseStorage:
    try:
        if url.startswith(JOURNAL):
            path = journal_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        if url.startswith(SQLITE):
            storage_file(url).parent.mkdir(parents=True, exist_ok=True)
            # Several processes may share one SQLite file: wait for locks instead of failing.
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        with _schema_lock(_with_driver(url)):
            return optuna.storages.RDBStorage(_with_driver(url))
    except Exception as e:  # sqlalchemy raises many types; the user needs one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CharmlpError(f"cannot open Optuna storage {redact(url)!r} ({msg}); fix: pass a working "
                           "hydra.sweeper.storage=URL (sqlite:///PATH, postgresql://..., journal:///PATH)") from None


# pg_advisory_lock key held while Optuna creates or checks its tables (any fixed 64-bit number;
# advisory locks are per database, so studies in other databases never wait on each other).
SCHEMA_LOCK_KEY = 0x636861726D6C70  # "charmlp"


@contextlib.contextmanager
def _schema_lock(url: str):
    """On PostgreSQL, one worker at a time builds RDBStorage. Its constructor creates Optuna's
    tables if missing and stamps the schema version; two workers doing that at once on a new
    database collide in the catalog (UniqueViolation on pg_type_typname_nsp_index). The lock
    lives on its own connection, so it is released when that closes, even if this process dies.
    Study creation needs no lock: create_study(load_if_exists=True) turns the loser's duplicate
    insert into a load."""
    if not url.startswith(("postgresql", "postgres")):
        yield
        return
    # Autocommit: the lock is the session's, and no transaction stays open while we wait.
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                      isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


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
