"""The `calendar` check: do appointments go to the right calendar, one SalesPartner can write to?

Rep part (no network, so it is reported even when the provider is down): a connected account that
is not the rep's work account — a personal Gmail/Outlook.com one (warning) or another organisation's
(info). Connection part, per active connection with tokens: the selected calendar is set, still
exists in the account's calendar list, is writable, and is the account's own primary calendar.
Provider failures propagate to the runner (`unknown`, or `calendar.skipped` for a dead grant).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.state import ConnectionState
from calsync.syncbackend.providers.base import Calendar

NAME = "calendar"
TITLE = "Selected calendar"

# The help center's "Verify the right calendar is selected", plus how to change it.
VERIFY_HINT = (
    "Verify the right calendar is selected: your calendar provider may have multiple calendars "
    "(personal, work, shared). Make sure SalesPartner is connected to the one you use for "
    "appointments — Settings > Calendar Connections > Reconnect, and choose your own calendar."
)
CHOOSE_HINT = (
    "Reconnect and choose the calendar you use for appointments: Settings > Calendar Connections > "
    "Reconnect, sign in, allow the permissions. Upcoming appointments sync on the next cycle."
)

# Consumer mail domains -> how people call that kind of account.
CONSUMER_DOMAINS: dict[str, str] = {
    "gmail.com": "Gmail",
    "googlemail.com": "Gmail",
    "outlook.com": "Outlook.com",
    "hotmail.com": "Hotmail",
    "hotmail.co.uk": "Hotmail",
    "live.com": "Live",
    "msn.com": "MSN",
    "passport.com": "Microsoft",
    "yahoo.com": "Yahoo",
    "ymail.com": "Yahoo",
    "icloud.com": "iCloud",
    "me.com": "iCloud",
    "mac.com": "iCloud",
    "aol.com": "AOL",
    "proton.me": "Proton",
    "protonmail.com": "Proton",
    "pm.me": "Proton",
    "gmx.com": "GMX",
    "gmx.de": "GMX",
    "web.de": "WEB.DE",
    "mail.com": "Mail.com",
    "zoho.com": "Zoho",
    "yandex.com": "Yandex",
    "fastmail.com": "Fastmail",
    "hey.com": "HEY",
}

_READ_ONLY_ROLES = ("reader", "freeBusyReader")


def _account_word(connection: ConnectionState) -> str:
    return "Google account" if connection.provider == "google" else "Microsoft account"


def _finding(
    connection: ConnectionState,
    code: str,
    severity: Severity,
    summary: str,
    hint: str,
    evidence: dict[str, Any],
) -> Finding:
    ids = {
        "connection_id": connection.id,
        "label": connection.label,
        "account_email": connection.account_email,
    }
    return Finding.of(NAME, code, severity, summary, hint, {**ids, **evidence}, connection)


def _calendar_evidence(calendar: Calendar) -> dict[str, Any]:
    return {
        "id": calendar.id,
        "name": calendar.name,
        "primary": calendar.primary,
        "access_role": calendar.access_role,
        "owner": calendar.owner,
    }


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower()


def _same_organisation(domain: str, work_domain: str) -> bool:
    return domain == work_domain or domain.endswith("." + work_domain) or work_domain.endswith("." + domain)


# -- rep part: whose account is connected (no network) -----------------------------------------------


async def run_rep(context: CheckContext) -> Sequence[Finding]:
    rep = context.rep
    findings: list[Finding] = []
    for connection in rep.active_connections:
        domain = _domain(connection.account_email)
        if _same_organisation(domain, rep.work_domain):
            continue
        evidence = {"work_email": rep.email, "account_domain": domain, "work_domain": rep.work_domain}
        kind = CONSUMER_DOMAINS.get(domain)
        if kind is not None:
            findings.append(
                _finding(
                    connection,
                    "calendar.personal_account",
                    Severity.WARNING,
                    f"Your personal {kind} ({connection.account_email}) is connected, "
                    f"not your work account {rep.email}.",
                    "Appointments land in your personal calendar. Connect your work calendar instead: "
                    "Settings > Calendar Connections, disconnect the current calendar, then Authorize and "
                    f"sign in as {rep.email}.",
                    {**evidence, "consumer_service": kind},
                )
            )
        else:
            findings.append(
                _finding(
                    connection,
                    "calendar.other_account",
                    Severity.INFO,
                    f"The connected account {connection.account_email} is not your work account {rep.email}.",
                    "If that isn't the calendar you use for appointments, reconnect with your work account: "
                    "Settings > Calendar Connections > Reconnect.",
                    evidence,
                )
            )
    return findings


# -- connection part: the selected calendar, live ----------------------------------------------------


def _find(calendars: Sequence[Calendar], calendar_id: str) -> Calendar | None:
    exact = next((calendar for calendar in calendars if calendar.id == calendar_id), None)
    if exact is not None:
        return exact
    folded = calendar_id.casefold()  # Google calendar ids are email addresses
    return next((calendar for calendar in calendars if calendar.id.casefold() == folded), None)


def _is_own(calendar: Calendar, connection: ConnectionState) -> bool:
    return calendar.owner is None or calendar.owner.lower() == connection.account_email.lower()


async def run_connection(context: CheckContext, connection: ConnectionState) -> Sequence[Finding]:
    account = _account_word(connection)
    if not connection.selected_calendar_id:
        return [
            _finding(
                connection,
                "calendar.none_selected",
                Severity.ERROR,
                f"No calendar is selected for SalesPartner in your {account} "
                f"({connection.account_email}), so appointments have nowhere to go.",
                CHOOSE_HINT,
                {"selected_calendar_id": None},
            )
        ]

    calendars = await context.live.calendars(connection)
    selected = _find(calendars, connection.selected_calendar_id)
    primary = next((calendar for calendar in calendars if calendar.primary), None)
    listing = [_calendar_evidence(calendar) for calendar in calendars]

    if selected is None:
        name = connection.selected_calendar_name or connection.selected_calendar_id
        return [
            _finding(
                connection,
                "calendar.not_found",
                Severity.ERROR,
                f"The calendar '{name}' that SalesPartner writes to no longer exists in your {account} "
                f"({connection.account_email}) — it was deleted or is no longer shared with you.",
                CHOOSE_HINT + (f" Your own calendar is '{primary.name}'." if primary is not None else ""),
                {
                    "selected_calendar_id": connection.selected_calendar_id,
                    "selected_calendar_name": connection.selected_calendar_name,
                    "calendars": listing,
                },
            )
        ]

    evidence: dict[str, Any] = {
        "selected_calendar": _calendar_evidence(selected),
        "primary_calendar": _calendar_evidence(primary) if primary is not None else None,
    }
    if selected.access_role in _READ_ONLY_ROLES or not selected.writable:
        owner = (
            f" or ask its owner ({selected.owner}) for permission to make changes"
            if selected.owner and not _is_own(selected, connection)
            else ""
        )
        return [
            _finding(
                connection,
                "calendar.read_only",
                Severity.ERROR,
                f"You can only read '{selected.name}', so SalesPartner can't add appointments to it.",
                "Verify the right calendar is selected: reconnect in Settings > Calendar Connections and "
                f"choose a calendar you can edit, such as your own calendar{owner}.",
                evidence,
            )
        ]
    if not selected.primary:
        own = _is_own(selected, connection)
        where = (
            f"your other calendar '{selected.name}'"
            if own
            else f"the shared calendar '{selected.name}' (owned by {selected.owner})"
        )
        instead = f", not your own calendar '{primary.name}'" if primary is not None else ""
        return [
            _finding(
                connection,
                "calendar.not_primary",
                Severity.WARNING,
                f"Appointments go to {where}{instead}.",
                VERIFY_HINT,
                {**evidence, "shared": not own},
            )
        ]
    return [
        _finding(
            connection,
            "calendar.ok",
            Severity.OK,
            f"Appointments go to your own calendar '{selected.name}' (primary), "
            "which SalesPartner can write to.",
            "",
            evidence,
        )
    ]


CALENDAR = Check(
    name=NAME,
    title=TITLE,
    run_rep=run_rep,
    run_connection=run_connection,
    needs_grant=True,
)
