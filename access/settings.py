"""Process configuration from the environment (pydantic-settings). Secrets never reach logs."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///eice.sqlite"
LOG_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Everything the bot reads from its environment.

    AWS credentials, region and endpoints come from botocore's own variables
    (`AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...) and are not repeated here.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    eice_slack_api_url: str = "https://slack.com/api/"
    eice_database_url: str = DEFAULT_DATABASE_URL
    eice_config: str | None = None
    eice_replica_id: str | None = None
    eice_reaper_interval_s: float = Field(default=2.0, gt=0)
    eice_reconciler_interval_s: float = Field(default=300.0, gt=0)
    eice_collector_interval_s: float = Field(default=60.0, gt=0)
    eice_chain_witness_interval_s: float = Field(default=3600.0, gt=0)
    eice_claim_lease_s: float = Field(default=60.0, gt=0)
    eice_overdue_after_s: float = Field(default=60.0, gt=0)
    eice_revoke_workers: int = Field(default=8, ge=1, le=64)
    eice_command_workers: int = Field(default=2, ge=0, le=32)
    eice_command_worker_priority: Literal["idle", "nice"] = "idle"
    eice_inbox_dir: str | None = None  # default $XDG_STATE_HOME/eice/inbox (bot.inbox)
    eice_log_level: str = "INFO"

    @field_validator("eice_log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        """A level name `logging` knows (`WARN` and `FATAL` too) or number, as its name."""
        level = value.strip().upper()
        if level.isdigit():
            level = logging.getLevelName(int(level))
        level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)} (or their numbers)")
        return level

    def __repr__(self) -> str:  # SecretStr already masks; keep the repr short too
        return f"Settings(database={redact_url(self.eice_database_url)!r})"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Log at `EICE_LOG_LEVEL` to stderr (`eice serve`, `eice tick`). APScheduler logs every
    run of every job at INFO, several a second: its lines show only at DEBUG."""
    logging.basicConfig(level=settings.eice_log_level, format=LOG_FORMAT)
    if settings.eice_log_level != "DEBUG":
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def redact_url(url: str) -> str:
    """A database URL with any password replaced by `***`."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (ConfigError naming the variable when one is bad)."""
    from access.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigError(f"environment: {'; '.join(problems)}") from None
