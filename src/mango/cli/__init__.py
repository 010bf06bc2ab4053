"""The ``mango`` command line: a thin layer over the Python API."""
from __future__ import annotations

import sys


def main() -> None:
    """The ``mango`` console script: stop signals are handled before anything heavy is imported, so an
    interruption at any moment ends in one line (a run's own handler says how to resume it)."""
    from .signals import install

    install()
    try:
        from .main import app

        app(prog_name="mango")
    except KeyboardInterrupt:
        from .signals import exit_code

        print("interrupted before the search started: nothing new was measured", file=sys.stderr)
        sys.exit(exit_code())
