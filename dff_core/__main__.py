"""``python -m dff_core``: the documented command, an entry shim that runs the CLI front end (``python -m cli``).

The one file in ``dff_core`` that names a front end (tests/test_house.py allows it by name): nothing imports a
``__main__``, so the science itself still imports no front end.
"""
import cli.__main__  # noqa: F401  (importing it runs the command line and exits)
