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
CONTRACT_KEYS = ["user", "question", "article", "findings", "articles", "actions"]
FINDING_KEYS = ["check", "code", "severity", "summary", "hint", "evidence"]


def run(state: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    # No provider settings: calsync runs against its own emulators.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GOOGLE_", "MICROSOFT_"))}
    env.update({"CALSYNC_STATE_DIR": str(state), "PYTHONIOENCODING": "utf-8"})
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
    # The revoked grant is named first, and its steps lead before the matched article's.
    assert answer["findings"][0]["code"] == "connection.revoked"
    assert answer["articles"][:2] == ["not-connected", "not-showing"]
    assert set(answer["articles"]) <= set(ARTICLE_IDS)
    assert answer["actions"][0] == {
        "kind": "reconnect",
        "provider": "google",
        "url": answer["actions"][0]["url"],
    }
    assert answer["actions"][-1] == {"kind": "contact_support", "provider": None, "url": None}


def test_ask_json_off_topic_checks_nothing(state: Path) -> None:
    answer = ask_json(state, "ana@northwind.example", "how do i reset my salespartner password?")
    assert answer == {
        "user": "ana@northwind.example",
        "question": "how do i reset my salespartner password?",
        "article": None,
        "findings": [],
        "articles": [],
        "actions": [],
    }


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


def test_ask_text_shows_marked_steps(state: Path) -> None:
    result = run(state, "ask", "hugo@northwind.example", "my appointments aren't showing in outlook")
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode("utf-8")
    assert "Appointments Not Showing Up" in text
    assert "❌" in text  # the read-only calendar marks the calendar step
    assert "Regional Sales (shared)" in text


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
