"""Progress bars for long work at a terminal (`calsync worker --once`, `sandbox load`, `db upgrade`).

A bar only when a person watches: on stderr, and only when both stdout and stderr are terminals
(and not with `--json`); piped, redirected or in a log, the commands print their one-line summaries
alone. The work reports `(done, total)` through the callable `progress` yields, or gets None when
nobody watches (and so may work in one go).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

Advance = Callable[[int, int], None]  # (done, total)


def watched(console: Console) -> bool:
    """Whether a person sees `console` (stderr) and the command's stdout alike."""
    return console.is_terminal and sys.stdout.isatty()


@contextmanager
def progress(
    description: str, *, quiet: bool = False, console: Console | None = None
) -> Iterator[Advance | None]:
    """A bar for `description` while the block runs; `console` (a test's) is taken as watched."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    shown_on = console or Console(stderr=True)
    if quiet or (console is None and not watched(shown_on)) or not shown_on.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=shown_on, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


__all__ = ["Advance", "progress", "watched"]
