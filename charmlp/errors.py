"""One exception type for every problem the user can fix; the CLIs print it as one line."""


class CharmlpError(Exception):
    """A problem with the user's input or config; the message names it and the fix."""


class TrialDiverged(CharmlpError):
    """Training produced NaN/inf or a loss above the configured ceiling."""


def require_positive(prefix: str, **values) -> None:
    """Raise a one-line CharmlpError naming the first value that is not a positive integer."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CharmlpError(f"{prefix}{key}={value} must be a positive integer")


class RunStopped(Exception):
    """Raised from an on_eval hook to end training early on purpose (e.g. pruned by the
    sweep). The trainer saves what it has with `status` in metrics.json, then re-raises."""
    status = "stopped"
