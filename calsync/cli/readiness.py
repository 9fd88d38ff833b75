"""The findings of `calsync check` (`calsync.cli.check`): what is missing or wrong in the settings,
before the first run.

One line per finding (`error`, `warn` or `ok`/`info`), named by the setting's own environment
variable (the `Settings` aliases); exit 0 when nothing is an error, 1 otherwise. Nothing here calls
Slack, Google or Microsoft: only the database is contacted (to read its schema revision, as
`calsync db current` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from calsync.settings import Settings

Level = Literal["error", "warn", "ok", "info"]


@dataclass(frozen=True)
class Finding:
    level: Level
    setting: str  # an environment variable, or "settings" / "Slack" where none applies
    message: str

    def line(self) -> str:
        return f"{self.level}: {self.setting}: {self.message}"


def variable(field: str) -> str:
    """The environment variable of a `Settings` field (its alias)."""
    from calsync.settings import Settings

    alias = Settings.model_fields[field].alias
    assert alias is not None, field
    return alias


def _secret(value: object) -> str:
    """A `SecretStr | None` setting's text, stripped ("" when unset)."""
    from pydantic import SecretStr

    return value.get_secret_value().strip() if isinstance(value, SecretStr) else ""


def check_settings(settings: Settings) -> list[Finding]:
    """Every finding about `settings`, the database's included."""
    findings: list[Finding] = []
    production = not settings.sandbox_mode
    if production:
        configured = [
            variable(field)
            for field in ("google_client_id", "microsoft_client_id")
            if getattr(settings, field)
        ]
        findings.append(Finding("info", "mode", f"real providers configured ({', '.join(configured)})"))
    else:
        findings.append(
            Finding(
                "info",
                "mode",
                f"sandbox: neither {variable('google_client_id')} nor {variable('microsoft_client_id')} "
                "is set, so calsync runs against its own Google and Microsoft emulators",
            )
        )
    findings.extend(_database(settings, production))
    findings.extend(_providers(settings))
    findings.extend(_secrets(settings, production))
    findings.extend(_public_url(settings, production))
    findings.extend(_slack(settings, production))
    return findings


def _database(settings: Settings, production: bool) -> list[Finding]:
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    from calsync.cli.mistakes import DATABASE_EXAMPLES
    from calsync.cli.output import safe_url
    from calsync.syncbackend import migrate

    name = variable("database_url")
    url = settings.resolved_database_url
    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [
            Finding(
                "error", name, f"not a database URL calsync can use ({first}); use e.g. {DATABASE_EXAMPLES}"
            )
        ]
    shown = safe_url(url)
    try:
        now = migrate.current(url)
    except OperationalError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        return [Finding("error", name, f"cannot reach {shown} ({reason}); is it running?")]
    head = migrate.head()
    if now == head:
        return [Finding("ok", name, f"{shown} is reachable and migrated (revision {now})")]
    if not production:  # the sandbox brings the schema up to date itself on every start
        return [
            Finding("info", name, f"{shown} is at revision {now or 'base'}; the sandbox migrates it on start")
        ]
    return [
        Finding(
            "error",
            name,
            f"{shown} is at revision {now or 'base'}, not {head}: run `calsync db upgrade`",
        )
    ]


def _providers(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for provider in ("google", "microsoft"):
        client_id, secret = f"{provider}_client_id", f"{provider}_client_secret"
        has_id = bool((getattr(settings, client_id) or "").strip())
        has_secret = bool(_secret(getattr(settings, secret)))
        if has_id and not has_secret:
            findings.append(Finding("error", variable(secret), f"is not set, but {variable(client_id)} is"))
        elif has_secret and not has_id:
            findings.append(
                Finding("warn", variable(secret), f"is set without {variable(client_id)}: it is ignored")
            )
        elif has_id:
            findings.append(Finding("ok", variable(client_id), "set, with its secret"))
    bundle = settings.microsoft_ca_bundle
    if bundle is not None and not Path(bundle).is_file():
        findings.append(Finding("error", variable("microsoft_ca_bundle"), f"{bundle} is not a file"))
    return findings


def _secrets(settings: Settings, production: bool) -> list[Finding]:
    from calsync.links import MIN_SECRET_BYTES
    from calsync.syncbackend.crypto import EncryptionKeyError, TokenCipher

    findings: list[Finding] = []
    key_name, link_name = variable("encryption_key"), variable("link_secret")
    key = _secret(settings.encryption_key)
    if key:
        try:
            cipher = TokenCipher.from_setting(key)
        except EncryptionKeyError as error:
            findings.append(Finding("error", key_name, str(error)))
        else:
            findings.append(Finding("ok", key_name, f"{cipher.key_count} valid Fernet key(s)"))
    elif production:
        findings.append(
            Finding(
                "error",
                key_name,
                "is not set: it is required when Google or Microsoft is configured (make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)",
            )
        )
    else:
        findings.append(
            Finding("info", key_name, f"not set: the sandbox keeps a generated key in {settings.state_dir}")
        )
    link = _secret(settings.link_secret)
    if link and len(link.encode("utf-8")) < MIN_SECRET_BYTES:
        findings.append(Finding("error", link_name, f"must be at least {MIN_SECRET_BYTES} characters"))
    elif link:
        findings.append(Finding("ok", link_name, "set"))
    elif production:
        findings.append(
            Finding(
                "error",
                link_name,
                "is not set: it is required when Google or Microsoft is configured (make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
            )
        )
    else:
        findings.append(
            Finding(
                "info", link_name, f"not set: the sandbox keeps a generated secret in {settings.state_dir}"
            )
        )
    return findings


def _public_url(settings: Settings, production: bool) -> list[Finding]:
    name = variable("public_url")
    url = settings.public_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [Finding("error", name, f"{url!r} is not an http(s) URL (e.g. https://calsync.example.com)")]
    if not production:
        return [Finding("info", name, f"{url} (the sandbox's default is fine for trying calsync)")]
    if "public_url" not in settings.model_fields_set:
        return [
            Finding(
                "error", name, "is not set: reps' reconnect links need the address people reach calsync at"
            )
        ]
    if parts.scheme != "https":
        return [Finding("error", name, f"must be https with real providers (got {url})")]
    return [Finding("ok", name, url)]


def _slack(settings: Settings, production: bool) -> list[Finding]:
    from calsync.bot.socket_mode import APP_TOKEN_PREFIX

    bot_name, secret_name, app_name = (
        variable("slack_bot_token"),
        variable("slack_signing_secret"),
        variable("slack_app_token"),
    )
    bot, signing, app = (
        _secret(settings.slack_bot_token),
        _secret(settings.slack_signing_secret),
        _secret(settings.slack_app_token),
    )
    if not bot:
        findings = [
            Finding(
                "warn" if production else "info",
                bot_name,
                "not set: `calsync serve` runs without Slack (the command line and the web pages only)",
            )
        ]
        findings.extend(
            Finding("warn", name, f"is set without {bot_name}: it is ignored")
            for name, value in ((secret_name, signing), (app_name, app))
            if value
        )
        return findings
    findings = []
    if app:
        if not app.startswith(APP_TOKEN_PREFIX):
            findings.append(
                Finding(
                    "error",
                    app_name,
                    f"must be an app-level token ({APP_TOKEN_PREFIX}…, Basic Information → App-Level Tokens, "
                    "scope connections:write), not a bot or user token",
                )
            )
        else:
            findings.append(Finding("ok", "Slack", f"Socket Mode ({bot_name} and {app_name} set)"))
    elif signing:
        findings.append(Finding("ok", "Slack", f"HTTP on /slack/events ({bot_name} and {secret_name} set)"))
    else:
        findings.append(
            Finding(
                "error",
                secret_name,
                f"is not set, so requests to /slack/events cannot be verified: set it (Basic Information → "
                f"Signing Secret) or use Socket Mode ({app_name})",
            )
        )
    if not (settings.support_channel or "").strip():
        findings.append(
            Finding(
                "warn",
                variable("support_channel"),
                f"not set: 'Talk to support' tells reps to contact {settings.support_contact} instead of posting",
            )
        )
    if not settings.agent_ids and not (settings.agent_usergroup or "").strip():
        findings.append(
            Finding(
                "warn",
                variable("agent_slack_ids"),
                f"not set, nor {variable('agent_usergroup')}: only users whose role is agent in the "
                "database may diagnose someone else",
            )
        )
    return findings


def invalid_settings(error: Exception) -> list[Finding]:
    """Settings that do not parse, one finding each (named by their variable, as pydantic reports)."""
    from pydantic import ValidationError

    assert isinstance(error, ValidationError)
    findings = []
    for item in error.errors():
        name = ".".join(str(part) for part in item.get("loc", ())) or "settings"
        given = item.get("input")
        shown = (
            f" (got {given!r})" if isinstance(given, str | int | float) and item["type"] != "missing" else ""
        )
        findings.append(Finding("error", name, f"{item.get('msg', 'invalid')}{shown}"))
    return findings
