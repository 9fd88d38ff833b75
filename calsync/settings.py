"""Settings, from environment variables and an optional `.env` file.

Every external base URL is a setting, so that the sandbox emulators and the real services are the
same code path. With no Google/Microsoft client settings calsync runs against the sandbox.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STATE_DIR = Path(".calsync")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Where local state lives (the SQLite file, the generated demo key, the sandbox CA).
    state_dir: Path = Field(default=DEFAULT_STATE_DIR, alias="CALSYNC_STATE_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    # Fernet key for OAuth tokens at rest. Unset: a key is generated once into state_dir (demo only).
    encryption_key: SecretStr | None = Field(default=None, alias="CALSYNC_ENCRYPTION_KEY")

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")

    # Who may diagnose someone else, besides users whose role is `agent` in the database.
    agent_slack_ids: str = Field(default="", alias="CALSYNC_AGENT_SLACK_IDS")  # comma-separated user ids
    agent_usergroup: str | None = Field(default=None, alias="CALSYNC_AGENT_USERGROUP")  # a user group id
    # Where "Talk to support" posts a rep's report (a channel id); unset: the rep is told whom to contact.
    support_channel: str | None = Field(default=None, alias="CALSYNC_SUPPORT_CHANNEL")
    support_contact: str = Field(default="SalesPartner support", alias="CALSYNC_SUPPORT_CONTACT")

    google_client_id: str | None = Field(default=None, alias="GOOGLE_CLIENT_ID")
    google_client_secret: SecretStr | None = Field(default=None, alias="GOOGLE_CLIENT_SECRET")
    google_api_url: str = Field(default="https://www.googleapis.com", alias="GOOGLE_API_URL")
    google_token_url: str = Field(default="https://oauth2.googleapis.com/token", alias="GOOGLE_TOKEN_URL")
    google_auth_url: str = Field(default="https://accounts.google.com/o/oauth2/auth", alias="GOOGLE_AUTH_URL")

    microsoft_client_id: str | None = Field(default=None, alias="MICROSOFT_CLIENT_ID")
    microsoft_client_secret: SecretStr | None = Field(default=None, alias="MICROSOFT_CLIENT_SECRET")
    microsoft_authority: str = Field(
        default="https://login.microsoftonline.com/common", alias="MICROSOFT_AUTHORITY"
    )
    microsoft_graph_url: str = Field(default="https://graph.microsoft.com/v1.0", alias="MICROSOFT_GRAPH_URL")
    # CA bundle to trust for the identity platform and Graph (the sandbox's generated CA); None = system CAs.
    microsoft_ca_bundle: Path | None = Field(default=None, alias="MICROSOFT_CA_BUNDLE")

    # Where people reach this deployment's web pages (reconnect links, reports).
    public_url: str = Field(default="http://127.0.0.1:8000", alias="CALSYNC_PUBLIC_URL")
    # HMAC key for signed links (reconnect, reports). Unset: generated once into state_dir (sandbox only).
    link_secret: SecretStr | None = Field(default=None, alias="CALSYNC_LINK_SECRET")

    # The work after Slack's ack (answers, commands, clicks): how many pieces run at once, and how many
    # one workspace and all workspaces together may hold (waiting and running) before more is shed.
    work_concurrency: int = Field(default=8, ge=1, alias="CALSYNC_WORK_CONCURRENCY")
    backlog_per_workspace: int = Field(default=100, ge=1, alias="CALSYNC_BACKLOG_PER_WORKSPACE")
    backlog_max: int = Field(default=300, ge=1, alias="CALSYNC_BACKLOG_MAX")

    # Seconds one provider call may take before it is classified as a timeout.
    provider_timeout: float = Field(default=8.0, alias="CALSYNC_PROVIDER_TIMEOUT")
    # Total seconds the retry loop may spend on one provider operation (429/5xx with backoff).
    provider_retry_budget: float = Field(default=4.0, alias="CALSYNC_PROVIDER_RETRY_BUDGET")

    # The sync engine's schedule: minutes between cycles, and in business hours (local to the zone).
    sync_interval_minutes: float = Field(default=15.0, gt=0, alias="CALSYNC_SYNC_INTERVAL_MINUTES")
    sync_business_interval_minutes: float = Field(
        default=5.0, gt=0, alias="CALSYNC_SYNC_BUSINESS_INTERVAL_MINUTES"
    )
    business_hours: str = Field(default="08:00-18:00", alias="CALSYNC_BUSINESS_HOURS")
    business_days: str = Field(default="mon,tue,wed,thu,fri", alias="CALSYNC_BUSINESS_DAYS")
    business_time_zone: str = Field(default="UTC", alias="CALSYNC_BUSINESS_TIME_ZONE")
    sync_jitter: float = Field(default=0.2, ge=0, lt=1, alias="CALSYNC_SYNC_JITTER")
    # Minutes between two health checks (a grant refresh) of every connected calendar.
    health_interval_minutes: float = Field(default=60.0, gt=0, alias="CALSYNC_HEALTH_INTERVAL_MINUTES")
    mass_cancel_count: int = Field(default=3, ge=1, alias="CALSYNC_MASS_CANCEL_COUNT")
    mass_cancel_share: float = Field(default=0.2, ge=0, le=1, alias="CALSYNC_MASS_CANCEL_SHARE")
    # When many failures are one incident (why these defaults: `calsync/syncbackend/incidents.py`).
    incident_org_min_reps: int = Field(default=3, ge=2, alias="CALSYNC_INCIDENT_ORG_MIN_REPS")
    incident_org_window_minutes: float = Field(
        default=30.0, gt=0, alias="CALSYNC_INCIDENT_ORG_WINDOW_MINUTES"
    )
    incident_outage_min_reps: int = Field(default=5, ge=2, alias="CALSYNC_INCIDENT_OUTAGE_MIN_REPS")
    incident_outage_min_orgs: int = Field(default=2, ge=1, alias="CALSYNC_INCIDENT_OUTAGE_MIN_ORGS")
    incident_outage_window_minutes: float = Field(
        default=15.0, gt=0, alias="CALSYNC_INCIDENT_OUTAGE_WINDOW_MINUTES"
    )
    # The answer queue (README, *Process model*): whether `calsync serve` also answers in its own
    # process (always so on SQLite), and how many questions one answer worker works on at once.
    serve_answers: bool = Field(default=True, alias="CALSYNC_SERVE_ANSWERS")
    # Whether `calsync serve` also runs the sync engine (what `calsync worker` runs), so one command
    # syncs on one machine; off where workers run apart.
    serve_sync: bool = Field(default=True, alias="CALSYNC_SERVE_SYNC")
    answer_concurrency: int = Field(default=8, ge=1, le=256, alias="CALSYNC_ANSWER_CONCURRENCY")

    @property
    def agent_ids(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.agent_slack_ids.split(",") if part.strip())

    @property
    def sandbox_mode(self) -> bool:
        """True when no real provider is configured: calsync starts the emulators itself."""
        return not (self.google_client_id or self.microsoft_client_id)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.state_dir / 'calsync.db').resolve()}"
