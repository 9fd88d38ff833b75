"""Small pieces of rep-facing wording that more than one surface or layer uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from calsync.syncbackend.engine import CycleResult


def appointments_phrase(titles: Sequence[str], *, singular: str, plural: str) -> str:
    """ "‘A’ is …" / "‘A’ and 2 others are …": the first title quoted, the rest counted."""
    first = f"\u2018{titles[0]}\u2019"
    if len(titles) == 1:
        return f"{first} {singular}"
    others = len(titles) - 1
    return f"{first} and {others} other{'s' if others > 1 else ''} {plural}"


def first_sync_note(result: CycleResult | None) -> str:
    """What the first sync after a reconnect did: never the error from before the reconnect."""
    if result is None or result.status in ("busy", "skipped"):
        return "The first sync is running — expect your upcoming appointments on your calendar within 15 minutes."
    if result.status == "error":
        return (
            "The first sync didn't get through just now; it tries again within a few minutes, "
            "nothing to do for you."
        )
    if not result.pushed_titles:
        return "Everything is in sync: your calendar has all your upcoming appointments."
    return appointments_phrase(
        result.pushed_titles, singular="is on your calendar now.", plural="are on your calendar now."
    )
