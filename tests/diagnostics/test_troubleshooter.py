"""`Troubleshooter.answer`: the whole path from a question to an Answer, over the real emulators."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.checks import ALL_CHECKS
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.troubleshooter import Troubleshooter, UnknownUser
from calsync.knowledge.loader import KnowledgeBase, load_articles
from calsync.knowledge.matcher import Matcher
from calsync.syncbackend.models import AuditEntry, CalendarConnection, User
from tests.harness import Sandbox

DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
NOT_SHOWING = "why isn't my appointment showing"


@pytest.fixture(scope="module")
def knowledge() -> KnowledgeBase:
    return load_articles()


@pytest.fixture(scope="module")
def matcher(knowledge: KnowledgeBase) -> Matcher:
    return Matcher.build(knowledge)


def troubleshooter(
    sandbox: Sandbox,
    knowledge: KnowledgeBase,
    matcher: Matcher,
    checks: Sequence[Check] = ALL_CHECKS,
    budget: float = 6.0,
) -> Troubleshooter:
    return Troubleshooter(
        sessions=sandbox.sessions,
        providers=sandbox.providers,
        cipher=sandbox.cipher,
        knowledge=knowledge,
        matcher=matcher,
        checks=checks,
        clock=sandbox.clock,
        reconnect_url=lambda email, provider: f"https://calsync.test/connect/{provider}?for={email}",
        budget=budget,
    )


# Each demo rep asks the same question and must hear about their own problem first.
DEMO_REPS = [
    ("ana", "connection.ok", ["not-showing"]),
    ("ben", "connection.ok", ["not-showing"]),
    ("carla", "connection.revoked", ["not-connected", "not-showing"]),
    ("dev", "connection.expired", ["not-connected", "not-showing"]),
    ("erin", "connection.consent_removed", ["not-connected", "not-showing"]),
    ("farid", "calendar.not_primary", ["not-showing"]),
    ("gina", "calendar.not_found", ["not-showing"]),
    ("hugo", "calendar.read_only", ["not-showing"]),
    ("iris", "calendar.personal_account", ["not-showing"]),
    ("jack", "sync.push_late", ["not-showing"]),
    ("kate", "sync.pending", ["not-showing"]),
    ("leo", "duplicates.old_provider_still_active", ["duplicates", "not-showing"]),
    ("maya", "provider_switch.switched", ["switch-provider", "not-showing"]),
    ("nora", "changes.cancelled_by_delete", ["changes-not-syncing", "not-showing"]),
    ("omar", "changes.pending", ["changes-not-syncing", "not-showing"]),
    ("pia", "provider.rate_limited", ["not-showing"]),
    ("quinn", "provider.unavailable", ["not-showing"]),
]


@pytest.mark.parametrize(("rep", "first_code", "articles"), DEMO_REPS, ids=[row[0] for row in DEMO_REPS])
async def test_each_demo_rep_hears_their_own_problem_first(
    sandbox: Sandbox,
    knowledge: KnowledgeBase,
    matcher: Matcher,
    rep: str,
    first_code: str,
    articles: list[str],
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer(f"{rep}@northwind.example", NOT_SHOWING)
    assert answer.article == "not-showing"
    assert answer.findings[0].code == first_code
    assert answer.verdict == (
        answer.findings[0].summary
        if answer.findings[0].severity is not Severity.OK
        else "Your calendar connection looks healthy — I found nothing wrong."
    )
    assert [shown.article.id for shown in answer.articles] == articles
    # A flaky provider is never a disconnection.
    if rep in ("pia", "quinn"):
        assert not {f.code for f in answer.findings} & {
            "connection.revoked",
            "connection.expired",
            "connection.none",
        }


@pytest.mark.parametrize(
    ("rep", "providers"),
    [("carla", ["google"]), ("dev", ["microsoft"]), ("gina", ["google"]), ("ana", [])],
    ids=["revoked-google", "expired-microsoft", "calendar-gone", "healthy"],
)
async def test_reconnect_is_offered_for_the_affected_provider(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher, rep: str, providers: list[str]
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer(f"{rep}@northwind.example", NOT_SHOWING)
    reconnects = [action for action in answer.actions if action.kind == "reconnect"]
    assert [action.provider for action in reconnects] == providers
    assert all(action.url and action.url.startswith("https://calsync.test/connect/") for action in reconnects)
    assert answer.actions[-1].kind == "contact_support"


async def test_steps_are_marked_by_what_the_checks_saw(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer("hugo@northwind.example", NOT_SHOWING)
    marks = {marked.step.key: marked.mark for marked in answer.articles[0].steps}
    assert marks == {"check-connection": "ok", "right-calendar": "error", "give-it-a-moment": "error"}
    right_calendar = next(m for m in answer.articles[0].steps if m.step.key == "right-calendar")
    assert right_calendar.codes == ("calendar.read_only",)


async def test_off_topic_checks_nothing_and_says_what_it_can_do(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)
    before = len(sandbox.world.requests())
    answer = await troubleshooter(sandbox, knowledge, matcher).answer(
        "ana@northwind.example", "how do I reset my SalesPartner password?"
    )
    assert answer.off_topic and answer.findings == () and answer.actions == ()
    assert answer.to_json()["article"] is None
    assert len(sandbox.world.requests()) == before  # no provider was called


async def test_unknown_user_is_refused(sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher) -> None:
    sandbox.load_file(DEMO)
    with pytest.raises(UnknownUser):
        await troubleshooter(sandbox, knowledge, matcher).diagnose("nobody@northwind.example")


async def test_rotated_refresh_tokens_are_stored_and_the_diagnosis_audited(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)

    def stored() -> bytes | None:
        with sandbox.sessions() as session:
            connection = session.scalars(
                select(CalendarConnection).where(CalendarConnection.account_email == "ben@northwind.example")
            ).one()
            return connection.refresh_token_encrypted

    before = stored()
    service = troubleshooter(sandbox, knowledge, matcher)
    first = await service.diagnose("ben@northwind.example", actor="U0AGENT")
    assert first.findings[0].code == "connection.ok"
    assert stored() != before  # Microsoft rotated the refresh token and we kept the new one
    second = await service.diagnose("ben@northwind.example", actor="U0AGENT")
    assert second.findings[0].code == "connection.ok"  # the stored token is the one that works now
    with sandbox.sessions() as session:
        entries = session.scalars(
            select(AuditEntry)
            .join(User, User.id == AuditEntry.subject_user_id)
            .where(User.email == "ben@northwind.example")
        ).all()
    assert [(entry.actor, entry.action, entry.result) for entry in entries] == [
        ("U0AGENT", "diagnose", "ok")
    ] * 2
    assert entries[0].detail["codes"][0] == "connection.ok"
    assert [first.diagnosis_id, second.diagnosis_id] == [str(entry.id) for entry in entries]


async def _crashes(context: CheckContext) -> list[Finding]:
    raise RuntimeError("boom")


async def _never_finishes(context: CheckContext) -> list[Finding]:
    await asyncio.Event().wait()
    return []


async def test_a_crashing_or_stuck_check_leaves_the_others_standing(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)
    broken = Check(name="broken", title="Broken", run_rep=_crashes)
    stuck = Check(name="stuck", title="Stuck", run_rep=_never_finishes)
    service = troubleshooter(sandbox, knowledge, matcher, checks=(*ALL_CHECKS, broken, stuck), budget=0.5)
    answer = await service.diagnose("carla@northwind.example")
    codes = [finding.code for finding in answer.findings]
    assert codes[0] == "connection.revoked"
    assert "internal.check_failed" in codes and "stuck.timeout" in codes
    internal = next(f for f in answer.findings if f.code == "internal.check_failed")
    assert internal.severity is Severity.UNKNOWN and internal.evidence == {
        "check": "broken",
        "error": "RuntimeError",
    }
