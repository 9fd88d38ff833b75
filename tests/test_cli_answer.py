"""`calsync ask`, `diagnose`, `demo` and `sandbox load`, run as the real console command in a
subprocess against its own sandbox (emulators started in-process, a temporary state directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from calsync.knowledge.loader import ARTICLE_IDS

CALSYNC = str(Path(sys.executable).parent / "calsync")
DEMO = Path(__file__).parents[1] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
CONTRACT_KEYS = [
    "user",
    "question",
    "article",
    "findings",
    "articles",
    "actions",
    "headline",
    "causes",
    "kind",
]
CAUSE_KEYS = ["code", "severity", "summary", "fix", "findings"]
FINDING_KEYS = ["check", "code", "severity", "summary", "hint", "evidence"]


def run(state: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    # No provider settings: calsync runs against its own emulators.
    extra = env or {}
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GOOGLE_", "MICROSOFT_"))}
    env.update({"CALSYNC_STATE_DIR": str(state), "PYTHONIOENCODING": "utf-8", **extra})
    env.pop("DATABASE_URL", None)
    return subprocess.run([CALSYNC, *args], capture_output=True, env=env, timeout=120, cwd=state)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory holding the demo world, loaded by the real `calsync sandbox load`."""
    directory = tmp_path_factory.mktemp("cli")
    result = run(directory, "sandbox", "load", str(DEMO))
    assert result.returncode == 0, result.stderr.decode()
    assert b"Loaded" in result.stderr
    return directory


def ask_json(state: Path, email: str, question: str) -> dict[str, Any]:
    result = run(state, "ask", email, question, "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert b"sandbox" in result.stderr  # the note goes to stderr; stdout is the JSON alone
    return dict(json.loads(result.stdout.decode("utf-8")))


def test_ask_json_follows_the_contract(state: Path) -> None:
    answer = ask_json(state, "carla@northwind.example", "why isn't my appointment showing")
    assert list(answer) == CONTRACT_KEYS
    assert answer["user"] == "carla@northwind.example"
    assert answer["article"] == "not-showing"
    assert all(list(finding) == FINDING_KEYS for finding in answer["findings"])
    # The revoked grant is named first; its article leads (the matched one adds nothing to it).
    assert answer["findings"][0]["code"] == "connection.revoked"
    assert answer["articles"] == ["not-connected"]
    assert set(answer["articles"]) <= set(ARTICLE_IDS)
    # The grouping: one cause stands for the findings it explains; every finding is kept.
    (cause,) = [c for c in answer["causes"] if c["severity"] in ("error", "warning", "unknown")]
    assert list(cause) == CAUSE_KEYS and cause["code"] == "connection.revoked"
    assert cause["fix"]["kind"] == "reconnect" and cause["fix"]["steps"] == ["reconnect"]
    assert set(cause["findings"]) >= {"connection.revoked", "sync.overdue", "calendar.skipped"}
    assert set(cause["findings"]) <= {f["code"] for f in answer["findings"]}
    assert answer["headline"] == cause["summary"] and answer["kind"] == "answer"
    assert answer["actions"][0] == {
        "kind": "reconnect",
        "provider": "google",
        "url": answer["actions"][0]["url"],
    }
    assert answer["actions"][-1] == {"kind": "contact_support", "provider": None, "url": None}


def test_ask_json_off_topic_is_declined_after_a_look(state: Path) -> None:
    answer = ask_json(state, "ana@northwind.example", "how do i reset my salespartner password?")
    assert answer["kind"] == "declined" and answer["article"] is None and answer["articles"] == []
    assert answer["headline"].startswith("That's not something I can help with")
    assert answer["actions"] == [{"kind": "contact_support", "provider": None, "url": None}]
    assert answer["findings"], "the rep's calendar was still checked (an error would be said in a line)"


@pytest.mark.parametrize(
    ("email", "first_code"),
    [
        ("ana@northwind.example", "connection.ok"),
        ("leo@northwind.example", "duplicates.old_provider_still_active"),
        ("pia@northwind.example", "provider.rate_limited"),
    ],
    ids=["healthy", "duplicates", "rate-limited"],
)
def test_diagnose_json_runs_every_check(state: Path, email: str, first_code: str) -> None:
    result = run(state, "diagnose", email, "--json")
    assert result.returncode == 0, result.stderr.decode()
    answer = json.loads(result.stdout.decode("utf-8"))
    assert answer["question"] is None and answer["article"] is None
    assert answer["findings"][0]["code"] == first_code
    if email.startswith("ana"):
        checks = {finding["check"] for finding in answer["findings"]}
        assert checks == {"connection", "calendar", "sync", "duplicates", "changes", "provider_switch"}
        assert {finding["severity"] for finding in answer["findings"]} == {"ok"}


def test_ask_text_leads_with_the_cause_and_its_fix(state: Path) -> None:
    result = run(state, "ask", "hugo@northwind.example", "my appointments aren't showing in outlook")
    assert result.returncode == 0, result.stderr.decode()
    text = " ".join(result.stdout.decode("utf-8").split())
    assert "You can only read 'Regional Sales (shared)'" in text
    assert "Fix: Select a calendar you can edit" in text
    assert "Verify the right calendar is selected (help center: Appointments Not Showing Up)" in text
    assert "❌" in text and "❌ Verify" not in text  # the headline is marked, a help-center step never


def test_ask_details_lists_every_finding(state: Path) -> None:
    result = run(state, "ask", "hugo@northwind.example", "where is my meeting", "--details")
    assert result.returncode == 0, result.stderr.decode()
    text = " ".join(result.stdout.decode("utf-8").split())
    assert "Details: what I checked" in text and "calendar.read_only" not in text


@pytest.mark.parametrize("columns", [None, "40"], ids=["default-width", "40-columns"])
def test_a_reconnect_url_is_printed_whole_on_its_own_line(state: Path, columns: str | None) -> None:
    extra = {"COLUMNS": columns} if columns else {}
    result = run(state, "ask", "carla@northwind.example", "my calendar is broken", env=extra)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode("utf-8").splitlines()
    (url,) = [line for line in lines if "/connect/google?t=" in line]
    assert url.startswith("http") and url == url.strip() and " " not in url and len(url) > 120
    assert "Traceback" not in result.stderr.decode()


def test_ask_text_off_topic_says_what_it_can_help_with(state: Path) -> None:
    result = run(state, "ask", "ana@northwind.example", "where do I find my invoice")
    assert result.returncode == 0, result.stderr.decode()
    text = " ".join(result.stdout.decode("utf-8").split())
    assert "I can help with" in text
    for title in ("Duplicate Appointments", "Switching Calendar Providers", "Popup Blocked When Connecting"):
        assert title in text
    assert "SalesPartner support" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "nobody@northwind.example", "why isn't my appointment showing"], "No SalesPartner user"),
        (["diagnose", "nobody@northwind.example", "--json"], "No SalesPartner user"),
        (["sandbox", "load", "/nonexistent/scenario.yaml"], "cannot read the file"),
    ],
    ids=["ask-unknown-user", "diagnose-unknown-user", "load-missing-file"],
)
def test_bad_input_gets_a_clear_message_and_exit_2(state: Path, args: list[str], message: str) -> None:
    result = run(state, *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert result.stdout == b""


def test_every_diagnosis_is_audited(state: Path) -> None:
    from sqlalchemy import create_engine, text

    run(state, "diagnose", "ana@northwind.example", "--json")
    engine = create_engine(f"sqlite:///{state / 'calsync.db'}")
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT a.actor, a.action, u.email FROM audit_log a JOIN users u ON u.id = a.subject_user_id "
                "WHERE u.email = 'ana@northwind.example' AND a.action = 'diagnose'"
            )
        ).all()
    engine.dispose()
    assert rows and rows[-1][0].startswith("cli:")


def test_demo_answers_each_rep_with_their_own_problem(tmp_path: Path) -> None:
    result = run(tmp_path, "demo")
    assert result.returncode == 0, result.stderr.decode()
    text = " ".join(result.stdout.decode("utf-8").split())
    assert text.count("Q: ") >= 8
    for expected in (
        "was revoked",
        "90 days without use",
        "shows up twice",
        "not a disconnection",
        "I can help with",
    ):
        assert expected in text, expected


def test_report_prints_the_agents_report_link_whole_on_its_own_line(state: Path) -> None:
    from calsync.app import utc_now
    from calsync.links import LinkSigner, load_or_create_link_secret
    from calsync.settings import Settings

    result = run(state, "report", "carla@northwind.example", env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    (url,) = result.stdout.decode("utf-8").splitlines()  # the link alone on stdout, one line
    assert url.startswith("http://127.0.0.1:8000/reports/") and " " not in url
    # The link the report page accepts: signed with the state dir's secret, kind report, for that rep.
    settings = Settings(_env_file=None).model_copy(update={"state_dir": state})  # type: ignore[call-arg]
    signer = LinkSigner(load_or_create_link_secret(settings, sandbox=True), utc_now)
    link = signer.read(url.rsplit("/", 1)[1], "report")
    assert link.subject["rep"] == "carla@northwind.example"
    assert str(link.subject["agent"]).startswith("cli:")


def test_report_for_an_unknown_email_says_so_in_one_sentence_and_exits_1(state: Path) -> None:
    result = run(state, "report", "nobody@northwind.example")
    assert result.returncode == 1
    assert result.stdout == b""
    said = [line for line in result.stderr.decode().splitlines() if "sandbox emulators" not in line]
    assert said == [
        "No SalesPartner user has the email 'nobody@northwind.example', so there is no report to open."
    ]


def _scenario(directory: Path, name: str) -> Path:
    path = directory / f"{name}.yaml"
    email = f"{name}@northwind.example"
    path.write_text(
        f"accounts:\n  - {{provider: google, email: {email}, name: {name}, grant: {{status: valid}}}}\n"
        f"users:\n  - {{email: {email}, name: {name}, role: rep}}\n",
        encoding="utf-8",
    )
    return path


def _world(state: Path) -> tuple[set[str], set[str]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{state / 'calsync.db'}")
    with engine.connect() as connection:
        users = set(connection.execute(text("SELECT email FROM users")).scalars())
        accounts = set(connection.execute(text("SELECT email FROM sandbox_accounts")).scalars())
    engine.dispose()
    return users, accounts


# (load arguments, exit code, what it says, the users then, the provider accounts then)
LOADS = [
    (["one"], 0, "Replaced the sandbox world", {"one"}, {"one"}),
    (["two", "--add"], 0, "Added to the sandbox world", {"one", "two"}, {"one", "two"}),
    (
        ["two", "--add"],
        2,
        "already in the sandbox: user two@northwind.example",
        {"one", "two"},
        {"one", "two"},
    ),
    (["one", "--replace"], 0, "Replaced the sandbox world", {"one", "two"}, {"one"}),
]


def test_sandbox_load_says_whether_it_replaced_or_added(tmp_path: Path) -> None:
    for args, code, said, users, accounts in LOADS:
        result = run(tmp_path, "sandbox", "load", str(_scenario(tmp_path, args[0])), *args[1:])
        stderr = result.stderr.decode()
        assert result.returncode == code, stderr
        assert said in stderr and "Traceback" not in stderr
        assert ("--add" in stderr) if "Replaced" in said else ("--replace" in stderr)
        expected = ({f"{u}@northwind.example" for u in users}, {f"{a}@northwind.example" for a in accounts})
        assert _world(tmp_path) == expected, args
