"""Errors the command line reports as one clear line instead of a traceback, and the one-line
warning of something a run recovers from."""

import sys


class PersonaBenchError(Exception):
    """Base class: a problem with the user's input, arguments or environment."""


class SurveyError(PersonaBenchError, ValueError):
    """Invalid survey input; the message names the file, column, row or key at fault."""


class ConfigError(PersonaBenchError, ValueError):
    """An invalid argument or run configuration; the message names it."""


class HeldOutAnswerError(PersonaBenchError):
    """A method reached for answers it may not see (held-out answers, or more than were revealed)."""


def warn(message: str) -> None:
    """One line on stderr: something went wrong that the run recovers from."""
    print(f"persona-bench: warning: {message}", file=sys.stderr)
