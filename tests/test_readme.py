"""The README documents every finding code the source can produce (the codes are a stable contract)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
CODE = re.compile(
    r"[\"'](?P<code>(?:connection|calendar|sync|duplicates|changes|provider_switch|provider|internal|incident)\.[a-z_]+)[\"']"
)
DYNAMIC = {"<check>.skipped", "<check>.timeout"}


def documented_codes() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Finding codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def source_codes() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "calsync" / "diagnostics").rglob("*.py"):
        found.update(match["code"] for match in CODE.finditer(path.read_text(encoding="utf-8")))
    return found


def test_every_finding_code_in_the_source_is_documented() -> None:
    codes = source_codes()
    assert len(codes) > 30  # the pattern still finds the codes
    assert codes - documented_codes() == set()


def test_the_readme_documents_no_code_the_source_cannot_produce() -> None:
    assert documented_codes() - source_codes() - DYNAMIC == set()
