"""User-facing errors, worded once for every front end: the CLI prints them as one line and exits 2, the pages
show them in one red box, a job records them as its error. Anything else is a bug and keeps its type name."""
from __future__ import annotations


class UsageError(ValueError):
    """Wrong combination of options."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that describe a problem with the user's input, shown as one line, never a traceback."""
    from dff_core.data.importers import DataError
    from storage import DatabaseBusy, DatabaseDamaged, NotFound

    return (DataError, NotFound, DatabaseBusy, DatabaseDamaged, UsageError, ValueError, FileNotFoundError, OverflowError)


def user_message(exc: BaseException) -> str:
    """One line for a person: the message alone for user errors, the exception type too otherwise."""
    if isinstance(exc, user_errors()):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
