"""The worlds the fix tests load: a rep whose appointments go to a shared calendar (one of each
provider), and a rep who switched provider with the old connection still on, doubling every
appointment. Messy on purpose where a rep would be."""

from __future__ import annotations

from pathlib import Path

DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
GINA = "U0DEMOGINA"  # the demo rep whose selected calendar was deleted

REP, OTHER_REP, AGENT = "U0NORA", "U0PETE", "U0AGENTDB"
NORA, PETE, AGNES = "nora@tallgrass.example", "pete@tallgrass.example", "agnes@tallgrass.example"

# provider -> (own calendar id, shared writable calendar id, read-only calendar id)
CALENDAR_IDS = {
    "google": (
        "nora@tallgrass.example",
        "sales-team@group.calendar.google.com",
        "holidays@group.calendar.google.com",
    ),
    "microsoft": (
        "AAMkAGI-nora-calendar-" + "x" * 150,  # Graph ids are long: longer than a menu option's value
        "AAMkAGI-nora-sales-team",
        "AAMkAGI-nora-holidays",
    ),
}


def _people() -> str:
    return f"""
  - email: {PETE}
    name: Pete Ruiz
    slack_user_id: {OTHER_REP}
    problem: A healthy rep who clicks other people's buttons.
    connections:
      - {{provider: google, account: {PETE}, selected_calendar: {PETE}, last_refreshed: "-10m"}}
  - email: {AGNES}
    name: Agnes Support
    role: agent
    slack_user_id: {AGENT}
    problem: A support agent.
"""


def _pete_account() -> str:
    return f"""
  - provider: google
    email: {PETE}
    name: Pete Ruiz
    calendars:
      - {{id: {PETE}, name: Pete Ruiz, primary: true}}
"""


def shared_calendar(provider: str) -> str:
    """Nora's appointments go to the shared "Sales Team" calendar; her own is writable, the
    holidays calendar read-only."""
    own, shared, holidays = CALENDAR_IDS[provider]
    return f"""
description: Appointments land on the team calendar instead of the rep's own.
accounts:
  - provider: {provider}
    email: {NORA}
    name: Nora Quinn
    calendars:
      - {{id: {own}, name: Nora Quinn, primary: true, access_role: owner}}
      - id: {shared}
        name: Sales Team
        access_role: writer
        owner: lead@tallgrass.example
        events:
          - {{id: nora-ev-1, title: Call with Vandelay, start: "tomorrow 11:00", appointment: nora-vandelay}}
      - {{id: {holidays}, name: Company holidays, access_role: reader, owner: hr@tallgrass.example}}
{_pete_account()}
users:
  - email: {NORA}
    name: Nora Quinn
    slack_user_id: {REP}
    problem: Her appointments go to the shared Sales Team calendar.
    connections:
      - {{provider: {provider}, account: {NORA}, selected_calendar: {shared}, selected_calendar_name: Sales Team, last_refreshed: "-10m"}}
    appointments:
      - id: nora-vandelay
        title: Call with Vandelay
        start: "tomorrow 11:00"
        booked: "-3h"
        links: [{{connection: {NORA}, event: nora-ev-1, last_pushed: "-3h"}}]
    sync_runs:
      - {{connection: {NORA}, direction: push, started: "-6m"}}
      - {{connection: {NORA}, direction: pull, started: "-6m"}}
{_people()}
"""


OLD_ACCOUNT = {"google": "nora@tallgrass.example", "microsoft": "nora.quinn@tallgrass.example"}
# The appointments on both calendars, and the one synced before the switch (only on the old one).
DOUBLED = ("nora-vandelay", "nora-kramerica")
BEFORE_SWITCH = "nora-pendant"


def switched(old: str) -> str:
    """Nora switched from `old` to the other provider and the old connection is still on: two
    appointments reached both calendars; one from before the switch is only on the old one."""
    new = "microsoft" if old == "google" else "google"
    old_account, new_account = OLD_ACCOUNT[old], OLD_ACCOUNT[new]
    old_calendar = "AAMkAGI-nora-old" if old == "microsoft" else old_account
    new_calendar = "AAMkAGI-nora-new" if new == "microsoft" else new_account
    return f"""
description: Switched provider, the old connection still on; every appointment shows up twice.
accounts:
  - provider: {old}
    email: {old_account}
    name: Nora Quinn
    calendars:
      - id: {old_calendar}
        name: Nora (old)
        primary: true
        events:
          - {{id: old-ev-1, title: Call with Vandelay, start: "tomorrow 11:00", appointment: nora-vandelay}}
          - {{id: old-ev-2, title: Demo for Kramerica, start: "+2d", appointment: nora-kramerica}}
          - {{id: old-ev-3, title: Pendant Publishing intro, start: "+3d", appointment: nora-pendant}}
          - {{id: old-own, title: Gym, start: "tomorrow 07:00"}}
  - provider: {new}
    email: {new_account}
    name: Nora Quinn
    calendars:
      - id: {new_calendar}
        name: Nora (new)
        primary: true
        events:
          - {{id: new-ev-1, title: Call with Vandelay, start: "tomorrow 11:00", appointment: nora-vandelay}}
          - {{id: new-ev-2, title: Demo for Kramerica, start: "+2d", appointment: nora-kramerica}}
{_pete_account()}
users:
  - email: {NORA}
    name: Nora Quinn
    slack_user_id: {REP}
    problem: Every meeting shows up twice since she switched.
    connections:
      - {{provider: {old}, account: {old_account}, selected_calendar: {old_calendar}, authorized: "-60d", last_refreshed: "-10m"}}
      - {{provider: {new}, account: {new_account}, selected_calendar: {new_calendar}, authorized: "-5d", last_refreshed: "-10m"}}
    appointments:
      - id: nora-vandelay
        title: Call with Vandelay
        start: "tomorrow 11:00"
        booked: "-2d"
        links:
          - {{connection: {old_account}, provider: {old}, event: old-ev-1, last_pushed: "-2d"}}
          - {{connection: {new_account}, provider: {new}, event: new-ev-1, last_pushed: "-2d"}}
      - id: nora-kramerica
        title: Demo for Kramerica
        start: "+2d"
        booked: "-1d"
        links:
          - {{connection: {old_account}, provider: {old}, event: old-ev-2, last_pushed: "-1d"}}
          - {{connection: {new_account}, provider: {new}, event: new-ev-2, last_pushed: "-1d"}}
      - id: nora-pendant
        title: Pendant Publishing intro
        start: "+3d"
        booked: "-10d"
        links:
          - {{connection: {old_account}, provider: {old}, event: old-ev-3, last_pushed: "-10d"}}
    sync_runs:
      - {{connection: {old_account}, provider: {old}, direction: push, started: "-6m"}}
      - {{connection: {new_account}, provider: {new}, direction: push, started: "-6m"}}
{_people()}
"""
