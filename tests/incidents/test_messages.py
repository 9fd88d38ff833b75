"""The support channel's incident message, as Slack gets it: valid blocks, the reps named (the first
few, the rest counted), and what the message says once it is over."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from calsync.render.blocks import validate_blocks
from calsync.render.incidents import incident_message
from calsync.syncbackend.incidents import AffectedRep, IncidentNotice, IncidentView
from calsync.syncbackend.models import IncidentKind

STARTED = datetime(2026, 12, 4, 9, 12, tzinfo=UTC)


def notice(
    kind: IncidentKind, provider: str, scope: str, affected: int, *, ended: bool = False
) -> IncidentNotice:
    view = IncidentView(
        7,
        kind,
        provider,
        scope,
        "consent_removed",
        STARTED,
        STARTED,
        0 if ended else affected,
        datetime(2026, 12, 4, 11, 0, tzinfo=UTC) if ended else None,
    )
    reps = tuple(
        AffectedRep(f"Rep {i} <&>", f"rep{i}@{scope}", f"U0REP{i}" if i % 2 else None)
        for i in range(min(affected, 10))
    )
    return IncidentNotice(view, 3, None, () if ended else reps, affected if ended else 1)


@pytest.mark.parametrize(
    ("made", "says"),
    [
        (
            notice("org_consent_removed", "microsoft", "tallgrass.example", 12),
            [
                "tallgrass.example: the Microsoft admin removed consent for SalesPartner",
                "12 people affected",
                "<@U0REP1>",
                "Rep 0 &lt;&amp;&gt;",
                "and 2 more",
                "1 healthy again",
            ],
        ),
        (
            notice("org_access_revoked", "google", "brightline.example", 3),
            ["brightline.example: the Google Workspace admin revoked", "3 people affected"],
        ),
        (
            notice("provider_outage", "google", "google", 40),
            ["Google is having an outage", "40 people affected"],
        ),
        (
            notice("org_consent_removed", "microsoft", "tallgrass.example", 5, ended=True),
            ["Over: tallgrass.example", "5 people affected"],
        ),
    ],
    ids=["consent", "workspace", "outage", "over"],
)
def test_the_support_message(made: IncidentNotice, says: list[str]) -> None:
    message = incident_message(made)
    assert validate_blocks(message.blocks or [], allow_markup=True) == []
    whole = message.text + " ".join(str(block) for block in message.blocks or [])
    for words in says:
        assert words in whole
    assert "your organisation" not in whole.lower(), "agents read it: no rep wording"
