"""What every flow and tick needs, built once per process from settings and config."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from access.aws.calls import AwsClients
from access.aws.iam import IamPolicies
from access.clock import AnchoredClock, Clock, SystemClock
from access.config.loader import load_config
from access.config.model import Config
from access.db import Database
from access.installation import installation_id
from access.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class Runtime:
    """The process's database, config, AWS adapters and clock; flows take it, never build it."""

    db: Database
    config: Config
    clients: AwsClients
    iam: IamPolicies
    clock: Clock = field(default_factory=SystemClock)
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    claim_lease_s: float = 60.0
    overdue_after_s: float = 60.0
    revoke_workers: int = 8
    reaper_interval_s: float = 2.0
    reminder_before_s: float = 300.0
    # Set by the in-process scheduler: told each grant's expiry once its policy is on.
    on_expiry_known: Callable[[str, datetime], None] | None = None
    # Set by the in-process scheduler: True while revocations are being worked, so
    # that work which can wait (CloudTrail collection) yields to them.
    revoking_now: Callable[[], bool] | None = None

    _installation_id: str | None = field(default=None, init=False, repr=False)

    def installation_id(self, session: Session | None = None) -> str:
        """This installation's ID, which grant policies carry; read from the database once.

        Pass the caller's session when it holds one: on SQLite a second transaction would
        wait for the first one's lock.
        """
        if self._installation_id is None:
            if session is not None:
                self._installation_id = installation_id(session)
            else:
                with self.db.transaction() as own:
                    self._installation_id = installation_id(own)
        return self._installation_id

    @property
    def regions(self) -> list[str]:
        return list(self.config.aws.regions)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, config: Config | None = None) -> Runtime:
        """Build from the environment (raises ConfigError for a bad `eice.toml`)."""
        settings = settings or get_settings()
        clients = AwsClients()
        # Expiry decisions follow AWS's clock, not this machine's (which may jump).
        clock = AnchoredClock(SystemClock())
        clients.on_server_time(clock.observe)
        clock.calibrate = lambda: clients.client("sts", clients_region()).get_caller_identity()
        return cls(
            db=Database(settings.eice_database_url),
            config=config if config is not None else load_config(settings.eice_config),
            clients=clients,
            iam=IamPolicies(clients),
            clock=clock,
            worker_id=settings.eice_replica_id
            or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
            claim_lease_s=settings.eice_claim_lease_s,
            overdue_after_s=settings.eice_overdue_after_s,
            revoke_workers=settings.eice_revoke_workers,
            reaper_interval_s=settings.eice_reaper_interval_s,
        )


def clients_region() -> str:
    """The region for global calls (STS): the environment's, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
