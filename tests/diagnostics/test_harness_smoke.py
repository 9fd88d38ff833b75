"""The test sandbox itself: a scenario loads and a live grant check goes over real HTTP."""

from __future__ import annotations

import pytest

from tests.harness import Sandbox

ONE_REP = """
accounts:
  - provider: google
    email: ana@northwind.example
    calendars: [{id: ana@northwind.example, name: Ana, primary: true}]
  - provider: microsoft
    email: ben@northwind.example
    grant: {status: revoked, aadsts: 700082}
    calendars: [{id: AAMk-ben, name: Calendar, primary: true}]
users:
  - email: ana@northwind.example
    connections: [{provider: google, account: ana@northwind.example, selected_calendar: ana@northwind.example}]
  - email: ben@northwind.example
    connections: [{provider: microsoft, account: ben@northwind.example, selected_calendar: AAMk-ben}]
"""


@pytest.mark.parametrize(
    ("email", "expected"),
    [("ana@northwind.example", "ana@northwind.example"), ("ben@northwind.example", "GrantError")],
    ids=["google-valid", "microsoft-inactive"],
)
async def test_live_grant_check_goes_to_the_emulator(sandbox: Sandbox, email: str, expected: str) -> None:
    sandbox.load(ONE_REP)
    context = sandbox.context(email)
    connection = context.rep.connections[0]
    try:
        info = await context.live.grant(connection)
        outcome = info.account_email
    except Exception as error:
        outcome = type(error).__name__
    finally:
        await context.live.close()
    assert outcome == expected
    assert any(request.path.endswith("/token") for request in sandbox.world.requests())
