"""SIGTERM and Ctrl-C stop a sweep only where stopping leaves nothing broken.

Python runs a signal handler between any two bytecodes of the main thread. An exception
raised there in the middle of a storage call can abandon a half-read SQLite cursor, whose
shared lock then blocks every later write: the sweep hung for minutes recording its
interrupted trials. So the sweep process runs shielded, and the handler only notes the signal;
it raises at once only where the sweep waits (for a slot, or while an inline trial trains),
and the note is raised when the shield is next lowered. Storage calls made while unshielded
(an inline trial's pruning reports) raise the shield around themselves."""
import contextlib
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SweepInterrupted(KeyboardInterrupt):
    """SIGTERM or Ctrl-C, raised so that the running trials are recorded before exit."""


_shields: list[bool] = [False]  # the main thread's shield, innermost last
_pending: list[str] = []  # the signal that arrived while shielded


def _on_signal(signum, frame) -> None:
    name = signal.Signals(signum).name
    if _shields[-1]:
        _pending[:] = [name]
        return
    raise SweepInterrupted(name)


def _raise_pending() -> None:
    if _pending and not _shields[-1]:
        raise SweepInterrupted(_pending.pop())


@contextlib.contextmanager
def shield(on: bool = True):
    """Inside `shield()` a signal waits; inside `shield(False)` it raises at once (and one that
    waited raises on entry). A noted signal raises when the shield comes down. Other threads
    never get signals: for them this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _shields.append(on)
    try:
        _raise_pending()
        yield
    finally:
        _shields.pop()
    _raise_pending()


@contextlib.contextmanager
def handled():
    """Install the handler for SIGTERM and SIGINT (in the main thread; elsewhere Python allows
    no handlers), shielded, and put back what was there before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in SIGNALS}
    _pending.clear()
    try:
        with shield():
            yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def end_on_signal() -> None:
    """In a slot's worker process: SIGTERM and SIGINT (Ctrl-C reaches the whole process group)
    end it at once, as they do a C program. Its trial is the sweep process's to record. A
    KeyboardInterrupt instead could land inside a storage call and leave the worker alive
    with that transaction's lock held, and the sweep then waited on the lock to record."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    _shields[:] = [False]
    _pending.clear()
