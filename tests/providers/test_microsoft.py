"""MicrosoftProvider against the Microsoft identity platform + Graph emulator, over real HTTPS.

msal and httpx talk TLS to the emulator on 127.0.0.1 (the locally generated CA is the only one
trusted); faults come from the sandbox world; assertions look at what the server received.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from calsync.sandbox.microsoft_common import SANDBOX_TENANT_ID
from calsync.sandbox.server import TLSFiles
from calsync.sandbox.world import SandboxRequest
from calsync.syncbackend.providers.base import (
    Authorization,
    CalendarProvider,
    EventDraft,
    GrantCause,
    GrantError,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from calsync.syncbackend.providers.microsoft import MicrosoftProvider
from calsync.syncbackend.providers.microsoft_identity import classify_token_error
from tests.providers.conftest import (
    MICROSOFT_CLIENT_ID,
    MICROSOFT_CLIENT_SECRET,
    MICROSOFT_EMAIL,
    MICROSOFT_PRIMARY,
    MICROSOFT_SALES,
    MICROSOFT_SHARED,
    MicrosoftSandbox,
    microsoft_add_event,
)

TOKEN_PATH = "/common/oauth2/v2.0/token"
DISCOVERY_PATH = "/common/v2.0/.well-known/openid-configuration"


def _graph_requests(sandbox: MicrosoftSandbox, suffix: str = "") -> list[SandboxRequest]:
    return [
        r
        for r in sandbox.world.requests("microsoft")
        if r.path.startswith("/v1.0") and r.path.endswith(suffix)
    ]


def _token_requests(sandbox: MicrosoftSandbox) -> list[SandboxRequest]:
    return [r for r in sandbox.world.requests("microsoft") if r.path == TOKEN_PATH]


def _draft(sandbox: MicrosoftSandbox, appointment_id: str = "appt-42", **changes: Any) -> EventDraft:
    now = sandbox.clock()
    values: dict[str, Any] = {
        "title": "Visit: Acme GmbH",
        "description": "Bring the contract.",
        "start": now + timedelta(days=1),
        "end": now + timedelta(days=1, hours=1),
        "appointment_id": appointment_id,
    }
    values.update(changes)
    return EventDraft(**values)


def _assert_no_secret_recorded(sandbox: MicrosoftSandbox, *secrets_: str | None) -> None:
    dump = json.dumps([[r.path, r.query, r.body] for r in sandbox.world.requests("microsoft")], default=str)
    for value in secrets_:
        if value:
            assert value not in dump
    assert MICROSOFT_CLIENT_SECRET not in dump


# -- the identity platform through msal -------------------------------------------------------------


def test_provider_satisfies_the_protocol(microsoft_sandbox: MicrosoftSandbox) -> None:
    provider = microsoft_sandbox.provider()
    assert isinstance(provider, CalendarProvider)
    assert provider.name == "microsoft"
    assert MICROSOFT_CLIENT_SECRET not in repr(provider)


def test_check_grant_rotates_the_refresh_token_through_msal(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    auth = sandbox.auth()
    old_refresh = auth.refresh_token

    info = sandbox.run(provider, provider.check_grant(auth))

    assert info.account_email == MICROSOFT_EMAIL
    assert info.expires_at == sandbox.clock() + timedelta(seconds=3599)
    assert auth.refreshed and auth.access_token and auth.refresh_token != old_refresh
    assert auth.account_email == MICROSOFT_EMAIL
    assert auth.tenant_id == SANDBOX_TENANT_ID, "the id token's tid: the account's organisation"
    new_grant = sandbox.world.grant_by_refresh_token(auth.refresh_token)
    assert new_grant is not None
    # Microsoft does not revoke the refresh token it replaced: both still refresh the same grant
    # (so two processes refreshing at once do not cut each other off).
    old_grant = sandbox.world.grant_by_refresh_token(old_refresh)
    assert old_grant is not None and old_grant[0].id == new_grant[0].id
    assert auth.access_token not in repr(auth) and auth.refresh_token not in repr(auth)

    # msal really did it, over https: discovery first, then the token endpoint with msal's own body.
    log = sandbox.world.requests("microsoft")
    assert [(r.method, r.path) for r in log] == [("GET", DISCOVERY_PATH), ("POST", TOKEN_PATH)]
    body = log[1].body or {}
    assert body["grant_type"] == "refresh_token"
    assert body["client_info"] == "1"  # msal asks for client_info
    assert set(body["scope"].split()) == {
        "Calendars.ReadWrite",
        "User.Read",
        "offline_access",
        "openid",
        "profile",
    }
    assert body["refresh_token"] == "[redacted]" and body["client_secret"] == "[redacted]"
    _assert_no_secret_recorded(sandbox, old_refresh, auth.refresh_token, auth.access_token)


def test_msal_refuses_a_non_https_authority(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider(authority=sandbox.authority.replace("https://", "http://"))
    with pytest.raises(ProviderError) as caught:
        sandbox.run(provider, provider.check_grant(sandbox.auth()))
    assert not isinstance(caught.value, GrantError)


def test_the_openid_configuration_is_fetched_once_per_provider(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    auth = sandbox.auth()

    async def twice() -> None:
        await provider.check_grant(auth)
        await provider.check_grant(auth)

    sandbox.run(provider, twice())
    paths = [r.path for r in sandbox.world.requests("microsoft")]
    assert paths == [DISCOVERY_PATH, TOKEN_PATH, TOKEN_PATH]


@pytest.mark.parametrize(
    ("aadsts", "cause", "error", "wording"),
    [
        (50173, GrantCause.PASSWORD_CHANGED, "invalid_grant", "password change or access was revoked"),
        (70008, GrantCause.EXPIRED, "invalid_grant", "expired"),
        (700082, GrantCause.INACTIVE, "invalid_grant", "expired after 90 days without use"),
        (65001, GrantCause.CONSENT_REMOVED, "invalid_grant", "permission"),
        (50076, GrantCause.MFA_REQUIRED, "interaction_required", "multi-factor"),
        (50158, GrantCause.MFA_REQUIRED, "interaction_required", "Conditional Access"),
    ],
    ids=[
        "50173-password-changed",
        "70008-expired",
        "700082-inactive",
        "65001-consent",
        "50076-mfa",
        "50158-ca",
    ],
)
@pytest.mark.parametrize("how", ["revoked-grant", "fault"])
def test_aadsts_codes_become_grant_errors_with_their_cause(
    microsoft_sandbox: MicrosoftSandbox, aadsts: int, cause: GrantCause, error: str, wording: str, how: str
) -> None:
    sandbox = microsoft_sandbox
    if how == "revoked-grant":
        sandbox.world.revoke_grant(sandbox.refresh_token, aadsts=aadsts)
    else:
        sandbox.world.add_fault("microsoft", "invalid_grant", endpoint="token", params={"aadsts": aadsts})
    provider = sandbox.provider()
    auth = sandbox.auth()

    with pytest.raises(GrantError) as caught:
        sandbox.run(provider, provider.check_grant(auth))

    grant_error = caught.value
    assert grant_error.cause is cause
    assert grant_error.codes == (aadsts,)
    assert grant_error.error == error
    assert grant_error.description.startswith(f"AADSTS{aadsts}:")
    assert wording in grant_error.message
    assert sandbox.refresh_token not in str(grant_error)
    assert not auth.refreshed and auth.refresh_token == sandbox.refresh_token
    assert len(_token_requests(sandbox)) == 1  # a dead grant is never retried
    assert sandbox.sleep.calls == []


def test_a_grant_error_surfaces_from_a_graph_call_too(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.revoke_grant(sandbox.refresh_token, aadsts=700082)
    provider = sandbox.provider()
    with pytest.raises(GrantError) as caught:
        sandbox.run(provider, provider.list_calendars(sandbox.auth()))
    assert caught.value.cause is GrantCause.INACTIVE
    assert _graph_requests(sandbox) == []


def test_a_failed_refresh_is_not_masked_by_msals_error_cache(microsoft_sandbox: MicrosoftSandbox) -> None:
    """msal would answer the same refresh from a 60 s cache after a 400; the provider switches that off."""
    sandbox = microsoft_sandbox
    sandbox.world.add_fault(
        "microsoft", "invalid_grant", endpoint="token", params={"aadsts": 50076}, remaining=1
    )
    provider = sandbox.provider()
    auth = sandbox.auth()

    async def fail_then_succeed() -> str | None:
        with pytest.raises(GrantError):
            await provider.check_grant(auth)
        info = await provider.check_grant(auth)
        return info.account_email

    assert sandbox.run(provider, fail_then_succeed()) == MICROSOFT_EMAIL
    assert [r.status for r in _token_requests(sandbox)] == [400, 200]


@pytest.mark.parametrize(
    ("fault", "params", "expected"),
    [
        ("unavailable", {"status": 503}, ProviderUnavailable),
        ("unavailable", {"status": 500}, ProviderUnavailable),
        ("rate_limit", {"retry_after": 30}, RateLimited),
        ("malformed", {}, MalformedResponse),
    ],
    ids=["503", "500", "429", "malformed-json"],
)
def test_a_flaky_token_endpoint_never_looks_like_a_dead_grant(
    microsoft_sandbox: MicrosoftSandbox, fault: str, params: dict[str, Any], expected: type[ProviderError]
) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault("microsoft", fault, endpoint="token", params=params)  # type: ignore[arg-type]
    provider = sandbox.provider()

    with pytest.raises(expected) as caught:
        sandbox.run(provider, provider.check_grant(sandbox.auth()))

    assert not isinstance(caught.value, GrantError)
    assert caught.value.transient
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 30  # more than the budget: raised at once
        assert sandbox.sleep.calls == []
    # every retry really reached the server (nothing answered from msal's throttle cache)
    assert len(_token_requests(sandbox)) == len(sandbox.sleep.calls) + 1


def test_a_throttled_token_endpoint_is_retried_after_retry_after(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault(
        "microsoft", "rate_limit", endpoint="token", params={"retry_after": 2}, remaining=1
    )
    provider = sandbox.provider()
    info = sandbox.run(provider, provider.check_grant(sandbox.auth()))
    assert info.account_email == MICROSOFT_EMAIL
    assert sandbox.sleep.calls == [2.0]
    assert [r.status for r in _token_requests(sandbox)] == [429, 200]


def test_a_hanging_token_endpoint_is_a_timeout(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault("microsoft", "hang", endpoint="token", params={"seconds": 2})
    provider = sandbox.provider(timeout=0.5, retry_budget=0)
    with pytest.raises(ProviderTimeout):
        sandbox.run(provider, provider.check_grant(sandbox.auth()))


def test_an_untrusted_certificate_is_a_tls_failure_not_a_dead_grant(
    microsoft_sandbox: MicrosoftSandbox, microsoft_foreign_tls: TLSFiles
) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider(ca_bundle=microsoft_foreign_tls.ca_path)
    with pytest.raises(ProviderUnavailable) as caught:
        sandbox.run(provider, provider.check_grant(sandbox.auth()))
    assert not isinstance(caught.value, GrantError)
    assert "TLS" in caught.value.message
    assert sandbox.sleep.calls == []  # a certificate problem does not go away by retrying


def test_an_untrusted_certificate_on_graph_is_a_tls_failure(
    microsoft_sandbox: MicrosoftSandbox, microsoft_foreign_tls: TLSFiles
) -> None:
    sandbox = microsoft_sandbox
    grant = sandbox.world.grant_by_refresh_token(sandbox.refresh_token)
    assert grant is not None
    token = sandbox.world.issue_access_token(grant[0].id, sandbox.clock(), timedelta(hours=1))
    auth = Authorization(
        refresh_token=sandbox.refresh_token,
        access_token=token.token,
        expires_at=sandbox.clock() + timedelta(hours=1),
        account_email=MICROSOFT_EMAIL,
    )
    provider = sandbox.provider(ca_bundle=microsoft_foreign_tls.ca_path)
    with pytest.raises(ProviderUnavailable) as caught:
        sandbox.run(provider, provider.list_calendars(auth))
    assert "TLS" in caught.value.message and "Graph" in caught.value.message
    assert token.token not in caught.value.message


# -- Graph: happy paths ------------------------------------------------------------------------------


def test_list_calendars_maps_owner_and_access(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    calendars = sandbox.run(provider, provider.list_calendars(sandbox.auth()))
    by_id = {c.id: c for c in calendars}
    assert set(by_id) == {MICROSOFT_PRIMARY, MICROSOFT_SALES, MICROSOFT_SHARED}
    assert by_id[MICROSOFT_PRIMARY].primary and by_id[MICROSOFT_PRIMARY].access_role == "owner"
    assert not by_id[MICROSOFT_SALES].primary and by_id[MICROSOFT_SALES].access_role == "owner"
    shared = by_id[MICROSOFT_SHARED]
    assert shared.access_role == "reader" and not shared.writable
    assert shared.owner == "boss@contoso.example" and shared.name == "Team holidays"


def test_list_events_reads_the_window_pages_and_filters_by_appointment(
    microsoft_sandbox: MicrosoftSandbox,
) -> None:
    sandbox = microsoft_sandbox
    for hour in range(12):
        microsoft_add_event(
            sandbox, MICROSOFT_PRIMARY, f"Meeting {hour}", 1 + hour, appointment_id=f"appt-{hour}"
        )
    microsoft_add_event(sandbox, MICROSOFT_PRIMARY, "Yesterday", -24)
    microsoft_add_event(sandbox, MICROSOFT_PRIMARY, "Next month", 24 * 30)
    microsoft_add_event(sandbox, MICROSOFT_SALES, "Other calendar", 2)
    provider = sandbox.provider()
    provider.page_size = 5
    auth = sandbox.auth()
    now = sandbox.clock()

    async def read() -> tuple[Any, Any]:
        window = await provider.list_events(auth, MICROSOFT_PRIMARY, now, now + timedelta(days=1))
        mine = await provider.list_events(
            auth, MICROSOFT_PRIMARY, now, now + timedelta(days=1), appointment_id="appt-7"
        )
        return window, mine

    window, mine = sandbox.run(provider, read())

    assert [e.title for e in window] == [f"Meeting {h}" for h in range(12)]
    assert all(e.start.tzinfo is not None and e.start.utcoffset() == timedelta(0) for e in window)
    assert window[0].start == now + timedelta(hours=1) and window[0].end == now + timedelta(hours=2)
    assert window[3].appointment_id == "appt-3"  # the extended property was expanded
    assert [(e.title, e.appointment_id) for e in mine] == [("Meeting 7", "appt-7")]

    views = _graph_requests(sandbox, "/calendarView")
    assert [parse_qs(r.query).get("$skip") for r in views] == [None, ["5"], ["10"], None]
    assert "singleValueExtendedProperties/Any" in parse_qs(views[-1].query)["$filter"][0]


def test_insert_get_update_delete(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    auth = sandbox.auth()
    draft = _draft(sandbox, time_zone="Europe/Berlin")
    moved = _draft(
        sandbox,
        title="Visit (moved)",
        start=draft.start + timedelta(hours=2),
        end=draft.end + timedelta(hours=2),
    )

    async def crud() -> tuple[Any, Any, Any]:
        created = await provider.insert_event(auth, MICROSOFT_PRIMARY, draft)
        fetched = await provider.get_event(auth, MICROSOFT_PRIMARY, created.id)
        updated = await provider.update_event(auth, MICROSOFT_PRIMARY, created.id, moved)
        await provider.delete_event(auth, MICROSOFT_PRIMARY, created.id)
        with pytest.raises(NotFound):
            await provider.get_event(auth, MICROSOFT_PRIMARY, created.id)
        return created, fetched, updated

    created, fetched, updated = sandbox.run(provider, crud())

    assert created.appointment_id == fetched.appointment_id == "appt-42"
    assert (fetched.title, fetched.description, fetched.start, fetched.end) == (
        draft.title,
        draft.description,
        draft.start,
        draft.end,
    )
    assert (updated.id, updated.title, updated.start) == (created.id, "Visit (moved)", moved.start)
    post = _graph_requests(sandbox, "/events")[0]
    assert post.method == "POST" and post.status == 201
    assert post.body is not None
    assert post.body["start"] == {"dateTime": "2026-11-25T16:00:00", "timeZone": "Europe/Berlin"}
    assert post.body["transactionId"]
    assert post.body["singleValueExtendedProperties"][0]["value"] == "appt-42"
    assert [r.status for r in _graph_requests(sandbox)][-2:] == [204, 404]


def test_inserting_twice_with_one_appointment_id_makes_one_event(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    auth = sandbox.auth()

    async def twice() -> tuple[Any, Any]:
        first = await provider.insert_event(auth, MICROSOFT_PRIMARY, _draft(sandbox))
        second = await provider.insert_event(auth, MICROSOFT_PRIMARY, _draft(sandbox))
        return first, second

    first, second = sandbox.run(provider, twice())
    assert first.id == second.id
    assert len(sandbox.world.ms_events(sandbox.pk(MICROSOFT_PRIMARY))) == 1
    posts = [r for r in _graph_requests(sandbox, "/events") if r.method == "POST"]
    assert len(posts) == 2 and posts[0].body and posts[1].body
    assert posts[0].body["transactionId"] == posts[1].body["transactionId"]


def test_changes_full_then_incremental_then_expired(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    kept = microsoft_add_event(sandbox, MICROSOFT_PRIMARY, "Kept", 2)
    edited = microsoft_add_event(sandbox, MICROSOFT_PRIMARY, "Edited", 3)
    deleted = microsoft_add_event(sandbox, MICROSOFT_PRIMARY, "Deleted", 4)
    microsoft_add_event(sandbox, MICROSOFT_PRIMARY, "Long ago", -24 * 400)
    provider = sandbox.provider()
    provider.page_size = 2
    auth = sandbox.auth()
    world = sandbox.world

    async def sync() -> tuple[Any, Any, Any]:
        full = await provider.changes(auth, MICROSOFT_PRIMARY, None)
        found = world.ms_find_event(sandbox.account_id, edited)
        gone = world.ms_find_event(sandbox.account_id, deleted)
        assert found and gone
        world.ms_update_event(found[1].pk, {"title": "Edited in Outlook"}, sandbox.clock())
        world.ms_delete_event(gone[1].pk, sandbox.clock())
        added = await provider.insert_event(auth, MICROSOFT_PRIMARY, _draft(sandbox))
        incremental = await provider.changes(auth, MICROSOFT_PRIMARY, full.cursor)
        world.add_fault("microsoft", "sync_token_expired", endpoint="changes", remaining=1)
        resync = await provider.changes(auth, MICROSOFT_PRIMARY, incremental.cursor)
        return full, (incremental, added), resync

    full, (incremental, added), resync = sandbox.run(provider, sync())

    assert {e.title for e in full.events} == {"Kept", "Edited", "Deleted"}
    assert not full.full_resync and full.full_read and not incremental.full_read
    # The cursor is the deltaLink relative to the Graph base URL: good whatever port the emulator has.
    assert full.cursor.startswith(f"/me/calendars/{MICROSOFT_PRIMARY}/calendarView/delta?")
    by_id = {e.id: e for e in incremental.events}
    assert set(by_id) == {edited, deleted, added.id}
    assert by_id[edited].title == "Edited in Outlook" and by_id[edited].status == "confirmed"
    assert by_id[deleted].status == "cancelled"
    assert kept not in by_id
    assert incremental.cursor != full.cursor and not incremental.full_resync
    assert resync.full_resync
    assert {e.title for e in resync.events} == {"Kept", "Edited in Outlook", "Visit: Acme GmbH"}
    deltas = _graph_requests(sandbox, "/calendarView/delta")
    assert 410 in [r.status for r in deltas]
    assert any("%24skiptoken" in r.query for r in deltas)  # the first read had more than one page


def test_a_garbled_cursor_means_a_full_resync(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    microsoft_add_event(sandbox, MICROSOFT_PRIMARY, "Kept", 2)
    provider = sandbox.provider()
    cursor = f"{sandbox.graph_url}/me/calendars/{MICROSOFT_PRIMARY}/calendarView/delta?$deltatoken=bm9wZQ"
    changes = sandbox.run(provider, provider.changes(sandbox.auth(), MICROSOFT_PRIMARY, cursor))
    assert changes.full_resync and [e.title for e in changes.events] == ["Kept"]


def test_a_cursor_for_another_host_is_never_followed(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    cursor = "https://evil.example/v1.0/me/calendars/x/calendarView/delta?$deltatoken=abc"
    changes = sandbox.run(provider, provider.changes(sandbox.auth(), MICROSOFT_PRIMARY, cursor))
    assert changes.full_resync
    assert all(r.path.startswith(("/v1.0", "/common")) for r in sandbox.world.requests("microsoft"))


def test_an_expired_access_token_is_refreshed_once_on_401(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    auth = Authorization(
        refresh_token=sandbox.refresh_token,
        access_token="at-not-known-to-graph",
        expires_at=sandbox.clock() + timedelta(hours=1),
    )
    provider = sandbox.provider()
    calendars = sandbox.run(provider, provider.list_calendars(auth))
    assert len(calendars) == 3 and auth.refreshed
    log = [(r.path, r.status) for r in sandbox.world.requests("microsoft")]
    assert log == [
        ("/v1.0/me/calendars", 401),
        (DISCOVERY_PATH, 200),
        (TOKEN_PATH, 200),
        ("/v1.0/me/calendars", 200),
    ]


# -- Graph: faults -----------------------------------------------------------------------------------


def test_a_429_is_retried_after_its_retry_after(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault(
        "microsoft", "rate_limit", endpoint="calendars", params={"retry_after": 2}, remaining=1
    )
    provider = sandbox.provider()
    calendars = sandbox.run(provider, provider.list_calendars(sandbox.auth()))
    assert len(calendars) == 3
    assert sandbox.sleep.calls == [2.0]
    assert [r.status for r in _graph_requests(sandbox, "/calendars")] == [429, 200]


@pytest.mark.parametrize(
    ("retry_after", "sleeps", "requests"),
    [(3, [3.0], 2), (10, [], 1)],
    ids=["retried-then-out-of-budget", "longer-than-the-budget"],
)
def test_a_persistent_429_is_rate_limited(
    microsoft_sandbox: MicrosoftSandbox, retry_after: int, sleeps: list[float], requests: int
) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault("microsoft", "rate_limit", endpoint="events", params={"retry_after": retry_after})
    provider = sandbox.provider(retry_budget=4.0)
    now = sandbox.clock()
    with pytest.raises(RateLimited) as caught:
        sandbox.run(
            provider, provider.list_events(sandbox.auth(), MICROSOFT_PRIMARY, now, now + timedelta(days=1))
        )
    assert caught.value.retry_after == retry_after
    assert sandbox.sleep.calls == sleeps
    assert [r.status for r in _graph_requests(sandbox, "/calendarView")] == [429] * requests


@pytest.mark.parametrize("status", [503, 504])
def test_an_outage_is_unavailable_after_bounded_backoff(
    microsoft_sandbox: MicrosoftSandbox, status: int
) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault("microsoft", "unavailable", endpoint="calendars", params={"status": status})
    provider = sandbox.provider(retry_budget=4.0)
    with pytest.raises(ProviderUnavailable) as caught:
        sandbox.run(provider, provider.list_calendars(sandbox.auth()))
    assert caught.value.status == status
    assert sandbox.sleep.calls == [0.5, 1.0, 2.0]
    assert sum(sandbox.sleep.calls) <= 4.0
    assert [r.status for r in _graph_requests(sandbox, "/calendars")] == [status] * 4


def test_a_short_outage_is_ridden_out(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault("microsoft", "unavailable", endpoint="events", remaining=1)
    provider = sandbox.provider()
    event = sandbox.run(provider, provider.insert_event(sandbox.auth(), MICROSOFT_PRIMARY, _draft(sandbox)))
    assert event.appointment_id == "appt-42"
    assert [r.status for r in _graph_requests(sandbox, "/events")] == [503, 201]


def test_a_hanging_graph_is_a_timeout(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault("microsoft", "hang", endpoint="calendars", params={"seconds": 2})
    provider = sandbox.provider(timeout=0.5, retry_budget=0)
    auth = sandbox.auth()

    async def run() -> None:
        await provider.check_grant(auth)  # the token endpoint is fine
        await provider.list_calendars(auth)

    with pytest.raises(ProviderTimeout):
        sandbox.run(provider, run())


def test_malformed_json_is_a_malformed_response(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    sandbox.world.add_fault("microsoft", "malformed", endpoint="calendars")
    provider = sandbox.provider(retry_budget=0)
    with pytest.raises(MalformedResponse):
        sandbox.run(provider, provider.list_calendars(sandbox.auth()))


def test_writing_to_a_read_only_calendar_is_permission_denied(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    with pytest.raises(PermissionDenied):
        sandbox.run(provider, provider.insert_event(sandbox.auth(), MICROSOFT_SHARED, _draft(sandbox)))
    posts = _graph_requests(sandbox, "/events")
    assert [(r.method, r.status) for r in posts] == [("POST", 403)]  # never retried
    assert sandbox.sleep.calls == []


def test_an_unknown_calendar_is_not_found(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider()
    now = sandbox.clock()
    with pytest.raises(NotFound):
        sandbox.run(
            provider, provider.list_events(sandbox.auth(), "AAMk-nope", now, now + timedelta(hours=1))
        )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"error": "invalid_grant", "error_codes": [9999]}, GrantCause.UNKNOWN),
        ({"error": "invalid_grant", "suberror": "consent_required"}, GrantCause.CONSENT_REMOVED),
        (
            {"error": "interaction_required", "error_description": "AADSTS50079: enroll"},
            GrantCause.MFA_REQUIRED,
        ),
        ({"error": "interaction_required"}, GrantCause.INTERACTION_REQUIRED),
        ({"error": "invalid_grant", "error_codes": [50034]}, GrantCause.ACCOUNT_DELETED),
    ],
    ids=["unknown-code", "suberror-consent", "code-in-description", "bare-interaction", "user-gone"],
)
def test_token_error_classification(payload: dict[str, Any], expected: GrantCause) -> None:
    error = classify_token_error(payload)
    assert isinstance(error, GrantError) and error.cause is expected


@pytest.mark.parametrize("error", ["temporarily_unavailable", "server_error", "invalid_client"])
def test_token_errors_that_are_not_about_the_grant(error: str) -> None:
    assert not isinstance(classify_token_error({"error": error}), GrantError)


def test_wrong_client_secret_is_not_a_dead_grant(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    provider = sandbox.provider(client_secret="wrong")
    with pytest.raises(ProviderError) as caught:
        sandbox.run(provider, provider.check_grant(sandbox.auth()))
    assert not isinstance(caught.value, GrantError)
    assert "AADSTS7000215" in caught.value.message


# -- the emulator itself -----------------------------------------------------------------------------


def _client(sandbox: MicrosoftSandbox) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(sandbox.tls.ca_path))
    return httpx.Client(base_url=sandbox.server.url, verify=context, trust_env=False)


def test_openid_configuration_points_back_at_the_server(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    with _client(sandbox) as client:
        config = client.get(DISCOVERY_PATH).json()
    base = sandbox.server.url
    assert config["authorization_endpoint"] == f"{base}/common/oauth2/v2.0/authorize"
    assert config["token_endpoint"] == f"{base}{TOKEN_PATH}"
    assert config["issuer"] == f"{base}/{{tenantid}}/v2.0"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize(client: httpx.Client, challenge: str, decision: str) -> httpx.Response:
    params = {
        "client_id": MICROSOFT_CLIENT_ID,
        "redirect_uri": "https://calsync.example/oauth/microsoft/callback",
        "response_type": "code",
        "scope": "offline_access Calendars.ReadWrite User.Read",
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": MICROSOFT_EMAIL,
        "prompt": "select_account",
        "response_mode": "query",
    }
    page = client.get("/common/oauth2/v2.0/authorize", params=params)
    assert page.status_code == 200
    assert MICROSOFT_EMAIL in page.text and "boss@contoso.example" in page.text
    assert "<script" not in page.text
    form = {
        k: params[k]
        for k in ("client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method")
    }
    return client.post(
        "/common/oauth2/v2.0/authorize/decision",
        data={**form, "account": MICROSOFT_EMAIL, "decision": decision},
    )


@pytest.mark.parametrize("verifier_ok", [True, False], ids=["right-verifier", "wrong-verifier"])
def test_consent_and_code_exchange_with_pkce(microsoft_sandbox: MicrosoftSandbox, verifier_ok: bool) -> None:
    sandbox = microsoft_sandbox
    verifier, challenge = _pkce()
    with _client(sandbox) as client:
        redirect = _authorize(client, challenge, "allow")
        assert redirect.status_code == 302
        location = urlsplit(redirect.headers["location"])
        query = parse_qs(location.query)
        assert location.netloc == "calsync.example" and query["state"] == ["st-123"]
        code = query["code"][0]
        token = client.post(
            TOKEN_PATH,
            data={
                "client_id": MICROSOFT_CLIENT_ID,
                "client_secret": MICROSOFT_CLIENT_SECRET,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "https://calsync.example/oauth/microsoft/callback",
                "code_verifier": verifier if verifier_ok else _pkce()[0],
            },
        )
        again = client.post(
            TOKEN_PATH,
            data={
                "client_id": MICROSOFT_CLIENT_ID,
                "client_secret": MICROSOFT_CLIENT_SECRET,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "https://calsync.example/oauth/microsoft/callback",
                "code_verifier": verifier,
            },
        )
    if verifier_ok:
        assert token.status_code == 200
        body = token.json()
        assert body["token_type"] == "Bearer" and body["refresh_token"] and body["expires_in"] == 3599
        payload = body["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["preferred_username"] == MICROSOFT_EMAIL and claims["aud"] == MICROSOFT_CLIENT_ID
        assert sandbox.world.grant_by_refresh_token(body["refresh_token"]) is not None
    else:
        assert token.status_code == 400
        assert token.json()["error"] == "invalid_grant" and token.json()["error_codes"] == [501481]
    assert again.status_code == 400 and again.json()["error_codes"] == [54005]  # a code is single-use
    _assert_no_secret_recorded(sandbox, code, verifier)


def test_deny_redirects_with_access_denied(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    with _client(sandbox) as client:
        redirect = _authorize(client, _pkce()[1], "deny")
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert redirect.status_code == 302
    assert query["error"] == ["access_denied"] and query["state"] == ["st-123"]
    assert "code" not in query and query["error_description"][0].startswith("AADSTS65004")


def test_graph_without_a_bearer_token_is_401_in_graphs_shape(microsoft_sandbox: MicrosoftSandbox) -> None:
    sandbox = microsoft_sandbox
    with _client(sandbox) as client:
        response = client.get("/v1.0/me/calendars", headers={"Authorization": "Bearer at-unknown"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken" and "request-id" in error["innerError"]
    logged = sandbox.world.requests("microsoft")[-1]
    assert (logged.path, logged.status) == ("/v1.0/me/calendars", 401)


def test_provider_constructor_is_keyword_only(microsoft_sandbox: MicrosoftSandbox) -> None:
    with pytest.raises(TypeError):
        MicrosoftProvider("https://x/common", "https://x/v1.0", "id", "secret")  # type: ignore[call-arg]
