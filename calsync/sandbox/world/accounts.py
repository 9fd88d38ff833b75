"""Accounts, grants (refresh tokens), access tokens and authorization codes."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, or_, select, update

from calsync.db import table_of, transaction
from calsync.sandbox.world.base import WorldBase, _loaded
from calsync.sandbox.world.tables import (
    Provider,
    SandboxAccessToken,
    SandboxAccount,
    SandboxAuthCode,
    SandboxFormerRefreshToken,
    SandboxGrant,
)

_ACCOUNTS = table_of(SandboxAccount)
_GRANTS = table_of(SandboxGrant)
_ACCESS_TOKENS = table_of(SandboxAccessToken)

# The statements every emulated request runs, built once (building one and its cache key costs
# about as much as running it on SQLite).
_FORMER_REFRESH_TOKENS = table_of(SandboxFormerRefreshToken)
_GRANT_BY_REFRESH_TOKEN = (
    select(_GRANTS, _ACCOUNTS)
    .join(_ACCOUNTS, _ACCOUNTS.c.id == _GRANTS.c.account_id)
    .where(
        or_(
            _GRANTS.c.refresh_token == bindparam("refresh_token"),
            _GRANTS.c.id.in_(
                select(_FORMER_REFRESH_TOKENS.c.grant_id).where(
                    _FORMER_REFRESH_TOKENS.c.token == bindparam("refresh_token")
                )
            ),
        )
    )
)
_KEEP_FORMER_REFRESH_TOKEN = insert(_FORMER_REFRESH_TOKENS).from_select(
    ["token", "grant_id"],
    select(_GRANTS.c.refresh_token, _GRANTS.c.id).where(_GRANTS.c.id == bindparam("grant_id")),
)
_ACCOUNT_BY_ACCESS_TOKEN = (
    select(_ACCOUNTS, _GRANTS.c.status, _ACCESS_TOKENS.c.expires_at)
    .join(_GRANTS, _GRANTS.c.account_id == _ACCOUNTS.c.id)
    .join(_ACCESS_TOKENS, _ACCESS_TOKENS.c.grant_id == _GRANTS.c.id)
    .where(_ACCESS_TOKENS.c.token == bindparam("token"))
)
_INSERT_ACCESS_TOKEN = insert(_ACCESS_TOKENS)
_ROTATE_REFRESH_TOKEN = (
    update(_GRANTS)
    .where(_GRANTS.c.id == bindparam("grant_id"))
    .values(refresh_token=bindparam("new_refresh_token"))
)


class AccountsMixin(WorldBase):
    """Accounts, grants and tokens: what the identity emulators read and write."""

    # -- accounts, grants and tokens -------------------------------------------------------------

    def add_account(self, provider: Provider, email: str, display_name: str = "") -> SandboxAccount:
        with transaction(self.sessions) as session:
            account = SandboxAccount(provider=provider, email=email.lower(), display_name=display_name)
            session.add(account)
            session.flush()
            return account

    def account(self, provider: Provider, email: str) -> SandboxAccount | None:
        with self.sessions() as session:
            return session.scalars(
                select(SandboxAccount).where(
                    SandboxAccount.provider == provider, SandboxAccount.email == email.lower()
                )
            ).first()

    def issue_grant(
        self, account_id: int, scopes: str = "", refresh_token: str | None = None
    ) -> SandboxGrant:
        with transaction(self.sessions) as session:
            grant = SandboxGrant(
                account_id=account_id,
                refresh_token=refresh_token or "rt-" + secrets.token_urlsafe(24),
                scopes=scopes,
            )
            session.add(grant)
            session.flush()
            return grant

    def revoke_grant(
        self, refresh_token: str, *, description: str = "", aadsts: int | None = None, suberror: str = ""
    ) -> None:
        with transaction(self.sessions) as session:
            former = select(SandboxFormerRefreshToken.grant_id).where(
                SandboxFormerRefreshToken.token == refresh_token
            )
            grant = session.scalars(
                select(SandboxGrant).where(
                    or_(SandboxGrant.refresh_token == refresh_token, SandboxGrant.id.in_(former))
                )
            ).one()
            grant.status = "revoked"
            grant.error_description = description
            grant.aadsts = aadsts
            grant.suberror = suberror

    # The calls every emulated request makes (token lookups, faults, the request log) use SQLAlchemy
    # Core on a plain connection rather than an ORM session: about a third of the CPU, and the
    # emulators answer every request of a health sweep over thousands of connections.

    def grant_by_refresh_token(self, refresh_token: str) -> tuple[SandboxGrant, SandboxAccount] | None:
        with self.engine.connect() as connection:
            row = connection.execute(_GRANT_BY_REFRESH_TOKEN, {"refresh_token": refresh_token}).first()
        if row is None:
            return None
        return _loaded(SandboxGrant, row._mapping), _loaded(SandboxAccount, row._mapping)

    def issue_access_token(self, grant_id: int, now: datetime, lifetime: timedelta) -> SandboxAccessToken:
        token = SandboxAccessToken(
            token="at-" + secrets.token_urlsafe(24), grant_id=grant_id, expires_at=now + lifetime
        )
        with self.engine.begin() as connection:
            connection.execute(
                _INSERT_ACCESS_TOKEN,
                {"token": token.token, "grant_id": token.grant_id, "expires_at": token.expires_at},
            )
        return token

    def account_for_access_token(self, token: str, now: datetime) -> SandboxAccount | None:
        """The account behind a live access token of a still-valid grant, else None."""
        with self.engine.connect() as connection:
            row = connection.execute(_ACCOUNT_BY_ACCESS_TOKEN, {"token": token}).first()
        if row is None or row.status != "valid" or row.expires_at <= now:
            return None
        return _loaded(SandboxAccount, row._mapping)

    def create_auth_code(
        self,
        account_id: int,
        *,
        prefix: str,
        client_id: str,
        redirect_uri: str,
        scopes: str,
        code_challenge: str,
        code_challenge_method: str,
        expires_at: datetime,
    ) -> str:
        """An authorization code from a consent page, waiting for the token exchange. `prefix` gives
        it the provider's look ("4/" for Google, "M." for Microsoft)."""
        with transaction(self.sessions) as session:
            code = SandboxAuthCode(
                code=prefix + secrets.token_urlsafe(32),
                account_id=account_id,
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                expires_at=expires_at,
            )
            session.add(code)
            return code.code

    # -- microsoft: the identity platform's consent page and token endpoint ---------------------

    def ms_accounts(self) -> list[SandboxAccount]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxAccount)
                    .where(SandboxAccount.provider == "microsoft")
                    .order_by(SandboxAccount.id)
                ).all()
            )

    def ms_take_auth_code(self, code: str) -> tuple[SandboxAuthCode, SandboxAccount] | None:
        """The code and its account, consumed (a code is single-use), or None if unknown or used."""
        with transaction(self.sessions) as session:
            row = session.execute(
                select(SandboxAuthCode, SandboxAccount)
                .join(SandboxAccount, SandboxAccount.id == SandboxAuthCode.account_id)
                .where(SandboxAuthCode.code == code)
            ).first()
            if row is None:
                return None
            session.delete(row[0])
            return row[0], row[1]

    def ms_rotate_refresh_token(self, grant_id: int) -> str:
        """Give the grant a new refresh token and return it; the one it replaces keeps working, as
        Microsoft's do (two processes refreshing at once must not revoke each other)."""
        refresh_token = "rt-" + secrets.token_urlsafe(24)
        with self.engine.begin() as connection:
            connection.execute(_KEEP_FORMER_REFRESH_TOKEN, {"grant_id": grant_id})
            rotated = connection.execute(
                _ROTATE_REFRESH_TOKEN, {"grant_id": grant_id, "new_refresh_token": refresh_token}
            )
            if rotated.rowcount != 1:
                raise KeyError(grant_id)
        return refresh_token

    # -- google: the consent page and token endpoint ---------------------------------------------

    def google_accounts(self) -> list[SandboxAccount]:
        """The Google accounts the consent page offers, by email."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxAccount)
                    .where(SandboxAccount.provider == "google")
                    .order_by(SandboxAccount.email)
                ).all()
            )

    def google_peek_auth_code(self, code: str) -> tuple[SandboxAuthCode, SandboxAccount] | None:
        """The code and its account, without using it up (to know whom a token request is for)."""
        with self.sessions() as session:
            row = session.execute(
                select(SandboxAuthCode, SandboxAccount)
                .join(SandboxAccount, SandboxAccount.id == SandboxAuthCode.account_id)
                .where(SandboxAuthCode.code == code)
            ).first()
            return (row[0], row[1]) if row else None

    def google_take_auth_code(self, code: str) -> SandboxAuthCode | None:
        """Use a code up: it is deleted whatever the exchange's outcome (codes are single-use)."""
        with transaction(self.sessions) as session:
            found = session.get(SandboxAuthCode, code)
            if found is not None:
                session.delete(found)
            return found
