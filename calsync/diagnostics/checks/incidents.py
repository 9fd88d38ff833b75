"""The `incident` check: is one of the rep's connections part of an incident — a shared cause that
many reps see at once (their organisation's admin removed SalesPartner's consent or revoked its
access; a provider outage)? Then that is what the rep hears first, and reconnecting is not offered
while it cannot work (`diagnostics/causes.py` folds the connection's own findings into it).

No network: the incident is in the snapshot (`RepState.incidents`, found by the sync engine's
detection, `calsync/syncbackend/incidents.py`). Nothing to say when there is none.
"""

from __future__ import annotations

from collections.abc import Sequence

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.humanize import clock_time
from calsync.diagnostics.state import evidence_time
from calsync.render.words import incident_fix, incident_summary

NAME = "incident"
TITLE = "Shared problems"

# IncidentKind -> finding code (stable: README, *Finding codes*).
CODES: dict[str, str] = {
    "org_consent_removed": "incident.org_consent_removed",
    "org_access_revoked": "incident.org_access_revoked",
    "provider_outage": "incident.provider_outage",
}
ORG_CODES = frozenset({"incident.org_consent_removed", "incident.org_access_revoked"})


async def _run(context: CheckContext) -> Sequence[Finding]:
    findings = []
    for membership in context.rep.incidents:
        incident = membership.incident
        try:
            connection = context.rep.connection(membership.connection_id)
        except StopIteration:
            continue
        since = clock_time(incident.started_at, context.now)
        if incident.started_at.date() == context.now.date():
            since = clock_time(incident.started_at)
        findings.append(
            Finding.of(
                NAME,
                CODES[incident.kind],
                Severity.WARNING if incident.kind == "provider_outage" else Severity.ERROR,
                incident_summary(
                    incident.kind, incident.provider, incident.scope, max(1, incident.affected), since
                ),
                incident_fix(incident.kind, incident.provider, membership.reconnected),
                {
                    "incident": incident.id,
                    "kind": incident.kind,
                    "scope": incident.scope,
                    "cause": incident.cause_code,
                    "affected": incident.affected,
                    "started_at": evidence_time(incident.started_at),
                    "last_seen_at": evidence_time(incident.last_seen_at),
                    "reconnected": membership.reconnected,
                },
                connection,
            )
        )
    return findings


INCIDENT = Check(name=NAME, title=TITLE, run_rep=_run)
