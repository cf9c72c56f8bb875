"""One exception type for every problem the user can fix; the CLIs print it as one line."""
from dataclasses import fields


class CharmlpError(Exception):
    """A problem with the user's input or config; the message names it and the fix."""


class TrialDiverged(CharmlpError):
    """Training produced NaN/inf or a loss above the configured ceiling."""


def require_positive(prefix: str, **values) -> None:
    """Raise a one-line CharmlpError naming the first value that is not a positive integer."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CharmlpError(f"{prefix}{key}={value} must be a positive integer")


def require(ok: bool, key: str, value, must: str) -> None:
    """Raise a one-line CharmlpError `key=value must be <must>` unless ok."""
    if not ok:
        raise CharmlpError(f"{key}={value!r} must be {must}")


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def is_number(value) -> bool:
    """An int or float as a config gives it (YAML's true is a bool, not the number 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value) -> bool:
    """A number with no fractional part (a config may write 8 as 8.0)."""
    return is_number(value) and float(value).is_integer()


def typed(key: str, kind: type, value):
    """value as `kind` (int, float, bool or str), or a one-line CharmlpError naming the key."""
    if kind is int and is_integer(value):
        return int(value)
    if kind is float and is_number(value):
        return float(value)
    if kind in (bool, str) and isinstance(value, kind):
        return value
    raise CharmlpError(f"{key}={value!r} must be {_KINDS[kind]}")


def require_types(prefix: str, spec) -> None:
    """Raise one line for the first int/float/bool/str field of the dataclass `spec` that holds
    another type (config.x=abc would otherwise fail later with a traceback). The values stay
    as given, so a valid config computes exactly what it did before."""
    for f in fields(spec):
        if f.type in _KINDS:
            typed(prefix + f.name, f.type, getattr(spec, f.name))


class RunStopped(Exception):
    """Raised from an on_eval hook to end training early on purpose (e.g. pruned by the
    sweep). The trainer saves what it has with `status` in metrics.json, then re-raises."""
    status = "stopped"
