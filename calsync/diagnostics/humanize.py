"""Times and durations in the words a rep reads: "4 minutes ago", "within the next 11 minutes",
"2:00 PM tomorrow". Pure functions of their arguments (the caller passes `now`), so every check and
every surface words the same moment the same way.

Durations that already passed round down ("4 minutes ago" for 4m50s); durations still to come
round up ("within the next 11 minutes" for 10m10s), so "booked 4 minutes ago — within the next
11 minutes" always adds up to the 15 minutes the help center promises.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def duration(delta: timedelta, *, round_up: bool = False) -> str:
    """A length of time in its largest sensible unit: "45 seconds", "11 minutes", "2 hours", "3 days".

    Minutes up to an hour, hours up to two days, then days. Negative deltas are taken as their size.
    """
    seconds = abs(delta.total_seconds())
    rounding = math.ceil if round_up else math.floor
    if seconds < 60:
        return _plural(max(1, math.ceil(seconds)) if round_up else int(seconds), "second")
    minutes = int(rounding(seconds / 60))
    if minutes < 60:
        return _plural(minutes, "minute")
    hours = int(rounding(seconds / 3600))
    if hours < 48:
        return _plural(hours, "hour")
    return _plural(int(rounding(seconds / 86400)), "day")


def ago(delta: timedelta) -> str:
    """How long ago something happened: "just now", "4 minutes ago", "6 hours ago", "3 days ago"."""
    if delta < timedelta(0):
        return from_now(-delta)
    if delta < timedelta(minutes=1):
        return "just now"
    return f"{duration(delta)} ago"


def from_now(delta: timedelta) -> str:
    """When something will happen: "in 11 minutes", "in 2 hours", "in a moment"."""
    if delta <= timedelta(0):
        return "any moment now"
    if delta < timedelta(minutes=1):
        return "in a moment"
    return f"in {duration(delta, round_up=True)}"


def within(delta: timedelta) -> str:
    """A deadline still to come: "within the next 11 minutes", "within a minute"."""
    if delta <= timedelta(0):
        return "any moment now"
    if delta <= timedelta(minutes=1):
        return "within a minute"
    return f"within the next {duration(delta, round_up=True)}"


def day_word(moment: datetime, now: datetime, tz: tzinfo = UTC) -> str:
    """The day of `moment` seen from `now`: "today", "tomorrow", "yesterday", "Friday" (this coming
    week), "last Friday" (the past week), else "Dec 3"."""
    days = (moment.astimezone(tz).date() - now.astimezone(tz).date()).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    if days == -1:
        return "yesterday"
    local = moment.astimezone(tz)
    if 2 <= days <= 6:
        return _WEEKDAYS[local.weekday()]
    if -6 <= days <= -2:
        return f"last {_WEEKDAYS[local.weekday()]}"
    return f"{_MONTHS[local.month - 1]} {local.day}"


def clock_time(moment: datetime, now: datetime | None = None, tz: tzinfo = UTC) -> str:
    """The time of day on a 12-hour clock, in UTC unless `tz` says otherwise: "2:00 PM"; with `now`,
    followed by the day: "2:00 PM tomorrow", "9:30 AM Friday", "11:00 AM Dec 3"."""
    local = moment.astimezone(tz)
    hour = local.hour % 12 or 12
    text = f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
    return text if now is None else f"{text} {day_word(moment, now, tz)}"
