"""The `connection` check: is there exactly one active calendar connection, and does the provider
accept our access to it right now?

Rep part (no network): no active connection at all, or more than one (every meeting twice).
Connection part, per active connection: no stored tokens, the backend's own `disconnected`/`error`
status, then a live grant refresh. A dead grant *is* this check's finding, so `GrantError` is caught
here and classified by its cause; a transient provider failure (rate limit, outage, timeout,
garbage) is left to the runner, which reports it as `unknown` — never as a disconnection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.humanize import ago
from calsync.diagnostics.runner import DEFAULT_BUDGET, provider_failure
from calsync.diagnostics.state import ConnectionState, evidence_time
from calsync.render import labels
from calsync.syncbackend.providers.base import (
    GrantCause,
    GrantError,
    GrantInfo,
    ProviderError,
    ProviderName,
    ProviderTimeout,
)

NAME = "connection"
TITLE = "Calendar connection"

# The help center's "How to reconnect", in short.
RECONNECT_HINT = (
    "Reconnect: Settings > Calendar Connections > Reconnect, sign in, allow the permissions. "
    "Upcoming appointments sync on the next cycle."
)
AUTHORIZE_HINT = (
    "Connect your calendar: Settings > Calendar Connections > Authorize, sign in to your calendar "
    "account, allow the permissions SalesPartner needs and wait for the connection to confirm."
)
MULTIPLE_HINT = (
    "Go to Settings > Calendar Connections and make sure you only have one active connection: "
    "disconnect the one you don't use. Don't delete both copies of an appointment in your calendar — "
    "deleting one cancels it in SalesPartner."
)
CONSENT_HINT = (
    RECONNECT_HINT + " If the permission screen says an administrator must approve SalesPartner, "
    "ask your IT team to approve it."
)
SIGN_IN_HINT = (
    "Reconnect and finish the whole sign-in, including any multi-factor prompt: "
    "Settings > Calendar Connections > Reconnect. Upcoming appointments sync on the next cycle."
)

# GrantCause -> (finding code, sentence). `{provider}` is "Google"/"Microsoft", `{calendar}` is
# "your Google Calendar (ana@acme.com)". Wording follows the help center's "Why this happens".
_CAUSES: dict[GrantCause, tuple[str, str]] = {
    GrantCause.REVOKED: (
        "connection.revoked",
        "{provider} says access to {calendar} was revoked — this usually follows a password change "
        "or a security-settings change.",
    ),
    GrantCause.PASSWORD_CHANGED: (
        "connection.revoked",
        "{provider} says your password changed or access was revoked, so {calendar} stopped syncing.",
    ),
    GrantCause.ACCOUNT_DELETED: (
        "connection.revoked",
        "{provider} says the account behind {calendar} no longer exists (it was deleted or disabled).",
    ),
    GrantCause.UNKNOWN: (
        "connection.revoked",
        "{provider} no longer accepts SalesPartner's access to {calendar} — this usually follows a "
        "password change, a security-settings change or app permissions being revoked.",
    ),
    GrantCause.EXPIRED: (
        "connection.expired",
        "Your {provider} sign-in for {calendar} has expired, so it stopped syncing.",
    ),
    GrantCause.INACTIVE: (
        "connection.expired",
        "{provider} sign-in expired after {inactive_period} without use, so {calendar} stopped syncing.",
    ),
    GrantCause.CONSENT_REMOVED: (
        "connection.consent_removed",
        "SalesPartner's permission to {calendar} was removed (often by IT), so it stopped syncing.",
    ),
    GrantCause.MFA_REQUIRED: (
        "connection.sign_in_required",
        "{provider} needs you to sign in again (multi-factor or a security policy) before {calendar} "
        "can sync.",
    ),
    GrantCause.INTERACTION_REQUIRED: (
        "connection.sign_in_required",
        "{provider} needs you to sign in again (a security policy) before {calendar} can sync.",
    ),
}

_HINTS: dict[str, str] = {
    "connection.consent_removed": CONSENT_HINT,
    "connection.sign_in_required": SIGN_IN_HINT,
}

# The backend's `status_code` (a GrantCause value, or how the connection ended) in the rep's words.
_BACKEND_REASONS: dict[str, str] = {
    GrantCause.REVOKED: "access was revoked (this usually follows a password change or a security-settings "
    "change)",
    GrantCause.PASSWORD_CHANGED: "your password changed or access was revoked",
    GrantCause.EXPIRED: "the sign-in expired",
    GrantCause.INACTIVE: "the sign-in expired because it's been a long time since you signed in",
    GrantCause.CONSENT_REMOVED: "SalesPartner's permission was removed (often by IT)",
    GrantCause.MFA_REQUIRED: "you need to sign in again (multi-factor or a security policy)",
    GrantCause.INTERACTION_REQUIRED: "you need to sign in again",
    GrantCause.ACCOUNT_DELETED: "the account no longer exists",
    GrantCause.UNKNOWN: "the calendar service stopped accepting SalesPartner's access",
    "switched": "it was disconnected to switch calendars",
}

DISCONNECTED_STATUSES = ("disconnected", "error")
# How long a connection the backend already marks disconnected waits for the live grant check.
BACKEND_DOWN_WAIT = DEFAULT_BUDGET / 2


def calendar_phrase(connection: ConnectionState) -> str:
    """ "your Google Calendar (ana@acme.com)" / "your Outlook calendar (ben@acme.com)"."""
    return f"your {labels.calendar_noun(connection.provider)} ({connection.account_email})"


_finding = partial(Finding.of, NAME)


def _connection_evidence(connection: ConnectionState) -> dict[str, Any]:
    return {
        "connection_id": connection.id,
        "label": connection.label,
        "account_email": connection.account_email,
        "authorized_at": evidence_time(connection.authorized_at),
        "last_refreshed_at": evidence_time(connection.last_refreshed_at),
    }


def _backend_evidence(connection: ConnectionState) -> dict[str, Any]:
    return {
        "backend_status": connection.status,
        "backend_status_code": connection.status_code,
        "backend_status_reason": connection.status_reason,
        "disconnected_at": evidence_time(connection.disconnected_at),
    }


# -- rep part -----------------------------------------------------------------------------------------


async def run_rep(context: CheckContext) -> Sequence[Finding]:
    rep = context.rep
    active = rep.active_connections
    if not active:
        earlier = [connection for connection in rep.connections if not connection.active]
        summary = "You don't have a calendar connected, so appointments can't reach a calendar."
        if earlier:
            latest = max(earlier, key=lambda connection: connection.disconnected_at or connection.created_at)
            when = f" {ago(context.now - latest.disconnected_at)}" if latest.disconnected_at else ""
            others = f" (and {len(earlier) - 1} more)" if len(earlier) > 1 else ""
            summary += f" Your {latest.label}{others} was disconnected{when}."
        return [
            Finding(
                check=NAME,
                code="connection.none",
                severity=Severity.ERROR,
                summary=summary,
                hint=AUTHORIZE_HINT,
                evidence={
                    "active_connections": 0,
                    "inactive_connections": [
                        {
                            "connection_id": connection.id,
                            "label": connection.label,
                            "status": connection.status,
                            "status_code": connection.status_code,
                            "status_reason": connection.status_reason,
                            "disconnected_at": evidence_time(connection.disconnected_at),
                        }
                        for connection in earlier
                    ],
                },
            )
        ]
    if len(active) > 1:
        return [
            Finding(
                check=NAME,
                code="connection.multiple_active",
                severity=Severity.WARNING,
                summary=(
                    f"You have {len(active)} calendars connected — appointments go to all of them, "
                    "so they show up twice."
                    if len(active) > 2
                    else "You have 2 calendars connected — appointments go to both, so they show up twice."
                ),
                hint=MULTIPLE_HINT,
                evidence={
                    "active_connections": len(active),
                    "labels": [connection.label for connection in active],
                    "connection_ids": [connection.id for connection in active],
                },
            )
        ]
    return []


# -- connection part ----------------------------------------------------------------------------------


def _disconnected(context: CheckContext, connection: ConnectionState, **extra: Any) -> Finding:
    """What the backend itself recorded: the connection stopped (status `disconnected` or `error`)."""
    reason = _BACKEND_REASONS.get(connection.status_code or "")
    when = f" {ago(context.now - connection.disconnected_at)}" if connection.disconnected_at else ""
    verb = "was disconnected" if connection.status == "disconnected" else "stopped working"
    summary = f"{calendar_phrase(connection)[0].upper()}{calendar_phrase(connection)[1:]} {verb}{when}"
    summary += f": {reason}." if reason else "."
    if extra.get("live_grant") == "ok":
        provider = labels.provider_name(connection.provider)
        summary += f" {provider} still accepts our access, but SalesPartner has stopped syncing it."
    return _finding(
        "connection.disconnected",
        Severity.ERROR,
        summary,
        RECONNECT_HINT,
        {**_connection_evidence(connection), **_backend_evidence(connection), **extra},
        connection,
    )


def _grant_failed(connection: ConnectionState, error: GrantError) -> Finding:
    code, template = _CAUSES.get(error.cause, _CAUSES[GrantCause.UNKNOWN])
    provider = labels.provider_name(error.provider)
    summary = template.format(
        provider=provider,
        calendar=calendar_phrase(connection),
        inactive_period="90 days" if connection.provider == "microsoft" else "a long time",
    )
    summary = summary[0].upper() + summary[1:]
    codes = [f"AADSTS{code}" if error.provider == "microsoft" else code for code in error.codes]
    evidence: dict[str, Any] = {
        **_connection_evidence(connection),
        "cause": error.cause.value,
        "error": error.error,
        "codes": codes,
        "description": error.description,
        "detail": error.message,
    }
    if connection.status in DISCONNECTED_STATUSES:
        evidence.update(_backend_evidence(connection))
    return _finding(code, Severity.ERROR, summary, _HINTS.get(code, RECONNECT_HINT), evidence, connection)


def _granted(context: CheckContext, connection: ConnectionState, info: GrantInfo) -> Finding:
    provider = labels.provider_name(connection.provider)
    phrase = calendar_phrase(connection)
    return _finding(
        "connection.ok",
        Severity.OK,
        f"{phrase[0].upper()}{phrase[1:]} is connected and {provider} accepted our access just now.",
        "",
        {
            **_connection_evidence(connection),
            "granted_account_email": info.account_email,
            "access_expires_at": evidence_time(info.expires_at),
            "scopes": list(info.scopes),
            "checked_at": evidence_time(context.now),
        },
        connection,
    )


async def run_connection(context: CheckContext, connection: ConnectionState) -> Sequence[Finding]:
    backend_down = connection.status in DISCONNECTED_STATUSES
    if not context.live.has_tokens(connection):
        if backend_down:
            return [_disconnected(context, connection, has_tokens=False)]
        phrase = calendar_phrase(connection)
        return [
            _finding(
                "connection.no_tokens",
                Severity.ERROR,
                f"{phrase[0].upper()}{phrase[1:]} is listed as connected, but SalesPartner has no "
                "sign-in stored for it, so nothing can sync.",
                RECONNECT_HINT,
                {**_connection_evidence(connection), "has_tokens": False},
                connection,
            )
        ]
    try:
        if backend_down:
            # Bounded here, below the runner's budget: a provider that hangs must not hide what the
            # backend already knows. `shield` keeps the shared grant read alive for other checks.
            info = await asyncio.wait_for(asyncio.shield(context.live.grant(connection)), BACKEND_DOWN_WAIT)
        else:
            info = await context.live.grant(connection)
    except TimeoutError:
        provider = cast(ProviderName, connection.provider)
        timeout = ProviderTimeout(provider, f"the grant check took longer than {BACKEND_DOWN_WAIT:g} s")
        return [
            _disconnected(context, connection, live_grant="unreachable"),
            provider_failure(CONNECTION, timeout, connection),
        ]
    except GrantError as error:
        # The live cause is the better explanation; the backend's own reason stays in evidence.
        return [_grant_failed(connection, error)]
    except ProviderError as error:
        if not backend_down:
            raise  # the runner turns it into an `unknown` provider finding, never a disconnection
        # The backend already knows it is disconnected: say so, and that the provider did not answer.
        return [
            _disconnected(context, connection, live_grant="unreachable"),
            provider_failure(CONNECTION, error, connection),
        ]
    if backend_down:
        return [_disconnected(context, connection, live_grant="ok", granted_account_email=info.account_email)]
    return [_granted(context, connection, info)]


CONNECTION = Check(
    name=NAME,
    title=TITLE,
    run_rep=run_rep,
    run_connection=run_connection,
    needs_grant=False,
)
