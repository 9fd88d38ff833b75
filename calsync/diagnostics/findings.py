"""What a check reports: value-equal findings with a stable code, a severity, words for the rep, a
hint, and evidence for an agent (the shape of Django's system-check messages)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class _Connection(Protocol):
    """What a finding records of the connection it is about (a `ConnectionState`)."""

    @property
    def id(self) -> int: ...

    @property
    def provider(self) -> str: ...


class Severity(enum.StrEnum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    UNKNOWN = "unknown"  # we could not find out (provider unreachable, check timed out)

    @property
    def rank(self) -> int:
        """Higher is shown first: what is broken, then what we could not check, then what is odd."""
        return _RANK[self]


_RANK = {
    Severity.ERROR: 4,
    Severity.UNKNOWN: 3,
    Severity.WARNING: 2,
    Severity.INFO: 1,
    Severity.OK: 0,
}


@dataclass(frozen=True)
class Finding:
    """One fact a check established. `code` is stable (documented in the README); `summary` is one
    line a rep understands; `hint` says what to do; `evidence` is detail for support agents (JSON-safe
    values only, never a token)."""

    check: str
    code: str
    severity: Severity
    summary: str
    hint: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict, hash=False)
    provider: str | None = None  # the calendar service this is about, when it is about one
    connection_id: int | None = None

    @classmethod
    def of(
        cls,
        check: str,
        code: str,
        severity: Severity,
        summary: str,
        hint: str,
        evidence: Mapping[str, Any],
        connection: _Connection | None = None,
    ) -> Finding:
        """A finding of `check`, about `connection` (its provider and id) when there is one."""
        return cls(
            check=check,
            code=code,
            severity=severity,
            summary=summary,
            hint=hint,
            evidence=evidence,
            provider=connection.provider if connection else None,
            connection_id=connection.id if connection else None,
        )

    @property
    def is_problem(self) -> bool:
        return self.severity in (Severity.ERROR, Severity.WARNING)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "code": self.code,
            "severity": self.severity.value,
            "summary": self.summary,
            "hint": self.hint,
            "evidence": dict(self.evidence),
        }


def by_severity(findings: list[Finding] | tuple[Finding, ...]) -> list[Finding]:
    """Most severe first; the order checks reported in is kept within one severity."""
    return sorted(findings, key=lambda finding: -finding.severity.rank)
