"""Faults (what the emulators should do wrong, and how often) and the request log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, inspect, or_, select, update

from calsync.db import table_of, transaction
from calsync.sandbox.world.base import WorldBase
from calsync.sandbox.world.tables import Endpoint, FaultKind, SandboxFault, SandboxRequest


@dataclass(frozen=True)
class FaultHit:
    kind: str
    params: dict[str, Any]
    fault_id: int | None = None  # the fault's row: a `hold` lasts while it is there


_FAULTS = table_of(SandboxFault)
_REQUESTS = table_of(SandboxRequest)

_FAULTS_OF = (
    select(_FAULTS)
    .where(or_(_FAULTS.c.provider == bindparam("provider"), _FAULTS.c.provider == "*"))
    .order_by(_FAULTS.c.id)
)
_TAKE_FAULT = (
    update(_FAULTS)
    .where(_FAULTS.c.id == bindparam("fault_id"), _FAULTS.c.remaining > 0)
    .values(remaining=_FAULTS.c.remaining - 1)
)
_INSERT_REQUEST = insert(_REQUESTS)


class FaultsMixin(WorldBase):
    """Faults: what an emulator does wrong, for which account and endpoint, and how often."""

    # -- faults ----------------------------------------------------------------------------------

    def add_fault(
        self,
        provider: str,
        kind: FaultKind,
        *,
        account_email: str | None = None,
        endpoint: Endpoint = "*",
        params: dict[str, Any] | None = None,
        remaining: int | None = None,
    ) -> int:
        with transaction(self.sessions) as session:
            fault = SandboxFault(
                provider=provider,
                account_email=account_email.lower() if account_email else None,
                endpoint=endpoint,
                kind=kind,
                params=params or {},
                remaining=remaining,
            )
            session.add(fault)
            session.flush()
            return fault.id

    def clear_faults(self) -> None:
        with transaction(self.sessions) as session:
            session.execute(delete(SandboxFault))

    def remove_fault(self, fault_id: int) -> None:
        with transaction(self.sessions) as session:
            session.execute(delete(SandboxFault).where(SandboxFault.id == fault_id))

    def has_fault(self, fault_id: int) -> bool:
        with self.sessions() as session:
            return session.get(SandboxFault, fault_id) is not None

    def take_faults(self, provider: str, endpoint: str, account_email: str | None) -> list[FaultHit]:
        """The faults that apply to one request, consuming one use of each counted fault (a
        conditional UPDATE, so two requests at once never both take a fault's last use)."""
        email = (account_email or "").lower()
        with self.engine.begin() as connection:
            rows = connection.execute(_FAULTS_OF, {"provider": provider}).all()
            hits: list[FaultHit] = []
            for fault in rows:
                if fault.endpoint not in ("*", endpoint):
                    continue
                if fault.account_email is not None and not _account_matches(fault.account_email, email):
                    continue
                if fault.remaining is not None:
                    taken = connection.execute(_TAKE_FAULT, {"fault_id": fault.id})
                    if taken.rowcount != 1:
                        continue
                hits.append(FaultHit(kind=fault.kind, params=dict(fault.params or {}), fault_id=fault.id))
            return hits


def _account_matches(pattern: str, email: str) -> bool:
    """A fault's `account`: one email, or `@domain` for every account of that domain (what an
    organisation's admin changes at once, e.g. a tenant's consent removed)."""
    return email.endswith(pattern) if pattern.startswith("@") else email == pattern


class RequestLogMixin(WorldBase):
    """Every request an emulator answered, for tests to assert on."""

    # -- request log -----------------------------------------------------------------------------

    def record_request(self, request: SandboxRequest) -> None:
        values = {key: value for key, value in inspect(request).dict.items() if key in _REQUESTS.c}
        with self.engine.begin() as connection:
            connection.execute(_INSERT_REQUEST, values)

    def requests(self, provider: str | None = None) -> list[SandboxRequest]:
        with self.sessions() as session:
            query = select(SandboxRequest).order_by(SandboxRequest.id)
            if provider:
                query = query.where(SandboxRequest.provider == provider)
            return list(session.scalars(query).all())
