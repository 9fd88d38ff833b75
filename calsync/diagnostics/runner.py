"""Run checks concurrently, each within a time budget, and never let a flaky provider or a broken
check turn into a wrong verdict: a rate limit, an outage, a timeout or a malformed answer becomes
an `unknown` finding that says so; a crash becomes an internal finding; the other checks report."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.state import ConnectionState
from calsync.render import labels
from calsync.syncbackend.providers.base import (
    GrantError,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 6.0  # seconds per check


def provider_failure(check: Check, error: ProviderError, connection: ConnectionState | None) -> Finding:
    """An `unknown` finding for a provider we could not get a straight answer from."""
    name = labels.provider_name(error.provider)
    evidence: dict[str, object] = {"error": type(error).__name__, "detail": error.message}
    if isinstance(error, RateLimited):
        code, what = "provider.rate_limited", f"{name} asked us to slow down (rate limited)"
        if error.retry_after is not None:
            evidence["retry_after_seconds"] = error.retry_after
    elif isinstance(error, ProviderTimeout):
        code, what = "provider.timeout", f"{name} did not answer in time"
    elif isinstance(error, MalformedResponse):
        code, what = "provider.malformed", f"{name} sent an answer we could not read"
    elif isinstance(error, ProviderUnavailable):
        code, what = "provider.unavailable", f"{name} is not available right now"
        if error.status is not None:
            evidence["status"] = error.status
    else:
        code, what = "provider.error", f"{name} returned an error"
    return Finding(
        check=check.name,
        code=code,
        severity=Severity.UNKNOWN,
        summary=f"Couldn't reach {name} just now: {what}. This is not a disconnection.",
        hint="Try again in a few minutes; nothing needs reconnecting.",
        evidence=evidence,
        provider=error.provider,
        connection_id=connection.id if connection else None,
    )


SKIP_REASONS = {
    "grant": ("the connection must be fixed first", "Reconnect the calendar, then check again."),
    "calendar_not_found": (
        "the selected calendar no longer exists",
        "Select another calendar, then check again.",
    ),
}


def skipped(check: Check, connection: ConnectionState, reason: str = "grant") -> Finding:
    """`<check>.skipped`: this check could not look at this connection (why: `SKIP_REASONS`)."""
    why, hint = SKIP_REASONS[reason]
    return Finding(
        check=check.name,
        code=f"{check.name}.skipped",
        severity=Severity.UNKNOWN,
        summary=f"Couldn't check {check.title.lower()} for {connection.label}: {why}.",
        hint=hint,
        evidence={"connection_id": connection.id, "reason": reason},
        provider=connection.provider,
        connection_id=connection.id,
    )


def failure(check: Check, error: ProviderError, connection: ConnectionState | None) -> Finding:
    """What a check that hit `error` reports: a calendar that answers 404 is gone (the calendar
    check says so; here it is a skipped check, not an outage), anything else `provider_failure`."""
    if isinstance(error, NotFound) and connection is not None:
        return skipped(check, connection, "calendar_not_found")
    return provider_failure(check, error, connection)


def _timed_out(check: Check, budget: float, connection: ConnectionState | None) -> Finding:
    return Finding(
        check=check.name,
        code=f"{check.name}.timeout",
        severity=Severity.UNKNOWN,
        summary=f"Checking {check.title.lower()} took too long, so we don't know yet.",
        hint="Try again in a minute.",
        evidence={"budget_seconds": budget},
        provider=connection.provider if connection else None,
        connection_id=connection.id if connection else None,
    )


def _crashed(check: Check, error: BaseException, connection: ConnectionState | None) -> Finding:
    return Finding(
        check=check.name,
        code="internal.check_failed",
        severity=Severity.UNKNOWN,
        summary=f"Something went wrong on our side while checking {check.title.lower()}.",
        hint="The other results are still valid; support has been told.",
        evidence={"check": check.name, "error": type(error).__name__},
        provider=connection.provider if connection else None,
        connection_id=connection.id if connection else None,
    )


async def _guarded(
    check: Check,
    work: Awaitable[Sequence[Finding]],
    budget: float,
    connection: ConnectionState | None,
) -> list[Finding]:
    try:
        # `asyncio.timeout` rather than `wait_for`: the check runs in the task `run_checks` already
        # gave it, not in a second one (every answer runs every check).
        async with asyncio.timeout(budget):
            return list(await work)
    except TimeoutError:
        return [_timed_out(check, budget, connection)]
    except GrantError:
        # The connection check reports the grant itself; any other check simply could not look.
        return [skipped(check, connection)] if connection else []
    except ProviderError as error:
        return [failure(check, error, connection)]
    except Exception as error:
        log.exception("check %s crashed", check.name)
        return [_crashed(check, error, connection)]


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One provider outage seen by three checks is one finding."""
    seen: set[tuple[str, int | None]] = set()
    unique = []
    for finding in findings:
        if finding.code.startswith("provider.") or finding.code.endswith(".skipped"):
            key = (finding.code, finding.connection_id)
            if key in seen:
                continue
            seen.add(key)
        unique.append(finding)
    return unique


async def run_checks(
    checks: Sequence[Check], context: CheckContext, *, budget: float = DEFAULT_BUDGET
) -> list[Finding]:
    """Every check's findings, in check order; all of them run at once."""
    units: list[Awaitable[list[Finding]]] = []
    for check in checks:
        if check.run_rep is not None:
            units.append(_guarded(check, check.run_rep(context), budget, None))
        if check.run_connection is not None:
            for connection in check.connections(context.rep):
                if check.needs_grant and not context.live.has_tokens(connection):
                    continue
                units.append(_guarded(check, check.run_connection(context, connection), budget, connection))
    results = await asyncio.gather(*units)
    return _dedupe([finding for result in results for finding in result])
