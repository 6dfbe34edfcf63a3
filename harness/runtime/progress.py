"""Progress bars for long stages (rich), off when output is not a terminal or when asked."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, TypeVar

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")

#: set to 1 to hide every progress bar (tests, logs)
QUIET_ENV = "HARNESS_NO_PROGRESS"


def enabled(requested: bool = True) -> bool:
    return requested and not os.environ.get(QUIET_ENV)


def make_progress(*extra_columns, transient: bool = False) -> Progress:
    """A rich Progress with the project's standard columns (plus ``extra_columns``)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), *extra_columns,
                    transient=transient, disable=not enabled())


def track(items: Iterable[T], description: str, total: int | None = None,
          show: bool = True) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (no bar if ``show`` is false)."""
    if not enabled(show):
        yield from items
        return
    with make_progress() as progress:
        yield from progress.track(items, total=total, description=description)
