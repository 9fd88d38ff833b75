"""Small pieces of rep-facing wording that more than one surface or layer uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from calsync.render.labels import FAILURE_WORDS, PULL_WORDS, PUSH_WORDS, SKIP_WORDS, product, provider_name

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


def cycle_summary(result: CycleResult) -> str:
    """One line for the rep or the operator: what a sync cycle did."""
    name = product(result.provider)
    where = f"{name} ({result.account_email})" if result.account_email else name
    if result.status == "busy":
        return f"{where}: a sync is already running; it will be done in a moment."
    if result.status == "skipped":
        why = SKIP_WORDS.get(result.error_code or "", result.error_code or "nothing to sync")
        return f"{where}: not synced — {why}."
    if result.status == "held":
        held = result.pulled.get("held", 0)
        return (
            f"{where}: {held} appointment{'s' if held != 1 else ''} deleted in the calendar at once — "
            "none cancelled; a support agent decides whether to cancel them or put them back."
        )
    if result.status == "error":
        why = FAILURE_WORDS.get(result.error_code or "", result.error_message or "an unknown error")
        return f"{where}: the sync did not get through — {why.format(provider=name)}."
    parts = [
        words.format(n=counts[key], s="" if counts[key] == 1 else "s")
        for counts, table in ((result.pushed, PUSH_WORDS), (result.pulled, PULL_WORDS))
        for key, words in table
        if counts.get(key)
    ]
    return f"{where}: synced just now — " + ("; ".join(parts) if parts else "already up to date") + "."


# -- incidents: one shared cause (`calsync/syncbackend/incidents.py`) ------------------------------


def people(count: int) -> str:
    """ "1 person" / "7 people"."""
    return "1 person" if count == 1 else f"{count} people"


def incident_what(kind: str, provider: str, whose: str = "your organisation's") -> str:
    """What an incident is: "your organisation's Microsoft admin removed consent for SalesPartner"
    (`whose`: "the" for support agents)."""
    if kind == "org_consent_removed":
        return f"{whose} {provider_name(provider)} admin removed consent for SalesPartner"
    if kind == "org_access_revoked":
        admin = "Google Workspace" if provider == "google" else provider_name(provider)
        return f"{whose} {admin} admin revoked SalesPartner's access"
    return f"{provider_name(provider)} is having an outage: {product(provider)} isn't answering"


def incident_summary(kind: str, provider: str, scope: str, affected: int, since: str) -> str:
    """The rep's headline: "This affects 7 people at tallgrass.example since 9:12 AM — …"."""
    if kind == "provider_outage":
        return (
            f"{incident_what(kind, provider)} — syncing has been failing for {people(affected)} "
            f"since {since}, not just you; nothing is wrong with your own connection."
        )
    return (
        f"This affects {people(affected)} at {scope} since {since} — {incident_what(kind, provider)}, "
        f"so {product(provider)} stopped syncing for all of them."
    )


def incident_fix(kind: str, provider: str, reconnected: int = 0) -> str:
    """The one thing that fixes an incident, for the rep; `reconnected`: colleagues who reconnected
    since (access is back, so reconnecting works again)."""
    if kind != "provider_outage" and reconnected:
        return (
            f"Access is back: {people(reconnected)} at your organisation reconnected since — reconnect "
            f"{product(provider)} now: sign in again and allow the permissions."
        )
    if kind == "org_consent_removed":
        return (
            "Your IT admin must restore access (approve SalesPartner for the organisation again); "
            "reconnecting won't help until then. Support knows — once access is back, reconnect."
        )
    if kind == "org_access_revoked":
        return (
            "Your IT admin must allow SalesPartner again in the Google Admin console; reconnecting "
            "won't help until then. Support knows — once access is back, reconnect."
        )
    return (
        f"Nothing to reconnect: your appointments sync by themselves once {provider_name(provider)} "
        "recovers. Support knows."
    )
