"""What the commands print for people: notes on stderr, so stdout stays clean for data."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def stderr() -> Console:
    """Notes for people go to stderr so stdout stays clean (JSON where --json asks for it)."""
    from rich.console import Console

    return Console(stderr=True)


def note(message: str) -> None:
    """One plain line on stderr: no markup, no wrapping (URLs and error texts stay intact)."""
    stderr().print(message, markup=False, highlight=False, soft_wrap=True)


def url_line(url: str, *, err: bool = True) -> None:
    """A URL alone on its own line, never wrapped or cropped whatever the terminal's width, ready to
    copy (plain `print`: rich would fold it at the console's width)."""
    print(url, file=sys.stderr if err else sys.stdout, flush=True)


def safe_url(url: str) -> str:
    """A database URL fit for printing: the password hidden."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)
