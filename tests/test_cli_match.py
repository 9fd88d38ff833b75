"""`calsync match`, run as the real console command in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _calsync() -> str:
    beside = Path(sys.executable).parent / "calsync"
    if beside.exists():
        return str(beside)
    found = shutil.which("calsync")
    if found is None:  # pragma: no cover - the project is not installed
        pytest.skip("the calsync console command is not installed")
    return found


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}  # the command must not depend on the locale
    return subprocess.run([_calsync(), *args], input=stdin, capture_output=True, env=env, timeout=60)


def match_lines(stdin: bytes) -> list[dict[str, object]]:
    result = run("match", stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]


def test_match_writes_one_json_object_per_line_with_exact_keys() -> None:
    result = run("match", stdin=b"every appt shows up twice in gcal\nhi there\n")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode("utf-8").split("\n")
    assert lines[-1] == ""  # newline-terminated
    first, second = (json.loads(line) for line in lines[:-1])
    assert list(first) == ["question", "article", "confidence"]
    assert first["question"] == "every appt shows up twice in gcal"
    assert first["article"] == "duplicates"
    assert isinstance(first["confidence"], float) and 0.0 < first["confidence"] <= 1.0
    assert round(first["confidence"], 4) == first["confidence"]
    assert second["article"] is None
    assert lines[0].startswith('{"question": "every appt')  # the stable `json.dumps` spacing


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        pytest.param(
            b"my cal says disconnected\n\npopup blocked\n",
            ["not-connected", None, "popup-blocked"],
            id="blank-middle",
        ),
        pytest.param(b"\n\n\n", [None, None, None], id="only-blank"),
        pytest.param(b"dupes in gcal\r\nhello\r\n", ["duplicates", None], id="crlf"),
        pytest.param(b"switching to outlook", ["switch-provider"], id="no-final-newline"),
        pytest.param(b"   \n\t\n", [None, None], id="whitespace-lines"),
    ],
)
def test_one_output_line_per_input_line(stdin: bytes, expected: list[str | None]) -> None:
    records = match_lines(stdin)
    assert [r["article"] for r in records] == expected
    assert [r["question"] for r in records] == stdin.decode().replace("\r\n", "\n").removesuffix("\n").split(
        "\n"
    )
    for record in records:
        if not str(record["question"]).strip():
            assert record["confidence"] == 0.0


def test_empty_stdin_gives_no_output_and_exit_zero() -> None:
    result = run("match")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""


def test_a_100k_character_line() -> None:
    long_line = "my appointment is missing from google calendar " + "a" * 100_000
    records = match_lines(f"{long_line}\nhi\n".encode())
    assert len(records) == 2
    assert records[0]["question"] == long_line
    assert records[1]["question"] == "hi"


def test_non_ascii_questions_come_back_unescaped() -> None:
    questions = ["my appointmént isn't in my calendar 📅", "カレンダーが表示されない", "¿por qué? 😅"]
    result = run("match", stdin="\n".join(questions).encode("utf-8"))
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode("utf-8")
    assert "\\u" not in text  # ensure_ascii=False
    assert [json.loads(line)["question"] for line in text.splitlines()] == questions


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    records = match_lines(b"dupes \xff\xfe in gcal\nhi\n")
    assert len(records) == 2
    assert records[0]["article"] == "duplicates"


def test_many_lines_stream_through() -> None:
    questions = ["why isn't my appointment in outlook", "thanks", "", "gcal dupes"] * 1500
    records = match_lines(("\n".join(questions) + "\n").encode())
    assert len(records) == len(questions)
    assert [r["question"] for r in records] == questions


def test_output_appears_before_stdin_is_closed() -> None:
    process = subprocess.Popen(
        [_calsync(), "match"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"dupes in my calendar\n")
        process.stdin.flush()
        first = json.loads(process.stdout.readline())  # would hang (test timeout) if not streamed
        assert first["article"] == "duplicates"
    finally:
        process.stdin.close()
        process.wait(timeout=30)
    assert process.returncode == 0
