"""One exception type for every problem the user can fix; the CLIs print it as one line."""


class CharmlpError(Exception):
    """A problem with the user's input or config; the message names it and the fix."""


class TrialDiverged(CharmlpError):
    """Training produced NaN/inf or a loss above the configured ceiling."""
