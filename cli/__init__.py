"""The command line: ``python -m cli`` (or ``python -m dff_core``), the same work as the dashboard, headless.

A front end like ``app.py`` + ``pages/``: it validates and queues through ``jobs``, reads through ``storage``
read models, and prints user errors as one line (``jobs.errors``). ``core`` holds the parser and the dataset
commands; each other module adds the sub-commands of one topic.
"""
from cli.core import main

__all__ = ["main"]
