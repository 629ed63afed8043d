"""Errors the command line reports as one clear line instead of a traceback."""


class PersonaBenchError(Exception):
    """Base class: a problem with the user's input, arguments or environment."""


class SurveyError(PersonaBenchError, ValueError):
    """Invalid survey input; the message names the file, column, row or key at fault."""


class ConfigError(PersonaBenchError, ValueError):
    """An invalid argument or run configuration; the message names it."""
