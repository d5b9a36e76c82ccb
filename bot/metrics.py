"""Prometheus metrics for `eice serve`: one registry per process, DB gauges at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from access.grants.models import Grant
from access.outbox.models import OutboxMessage

if TYPE_CHECKING:
    from access.runtime import Runtime
    from bot.inbox import Inbox

log = logging.getLogger(__name__)


class _DatabaseGauges(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        grants = GaugeMetricFamily("eice_grants", "Grants by status", labels=["status"])
        backlog = GaugeMetricFamily("eice_outbox_backlog", "Outbox rows not yet delivered")
        try:
            with self.rt.db.transaction() as s:
                for status, count in s.execute(select(Grant.status, func.count()).group_by(Grant.status)):
                    grants.add_metric([status], count)
                pending = s.scalar(select(func.count()).where(OutboxMessage.status == "pending"))
            backlog.add_metric([], pending or 0)
        except Exception:
            log.exception("metrics: database gauges unavailable")
            return
        yield grants
        yield backlog


class BotMetrics:
    """Request counts, ack latency, revocation lag; grants and outbox backlog from the DB."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "eice_slack_requests",
            "Requests to /slack/events",
            ["kind", "status"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "eice_ack_seconds",
            "Time to answer Slack (the ack)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 3, 5),
            registry=self.registry,
        )
        self.revocation_lag = Histogram(
            "eice_revocation_lag_seconds",
            "Revocation time minus expiry, for grants revoked on expiry",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
            registry=self.registry,
        )
        self.replayed = Counter(
            "eice_requests_replayed",
            "Acked requests run again after the server that acked them stopped",
            registry=self.registry,
        )
        self._db: _DatabaseGauges | None = None

    def watch_database(self, rt: Runtime) -> None:
        if self._db is None:
            self._db = _DatabaseGauges(rt)
            self.registry.register(self._db)

    def watch_inbox(self, inbox: Inbox) -> None:
        """`eice_requests_unfinished`: acked requests whose work is not over (read at scrape)."""
        gauge = Gauge(
            "eice_requests_unfinished",
            "Acked commands and decision clicks whose work is not over",
            registry=self.registry,
        )
        gauge.set_function(inbox.pending)

    def observe_revoked(self, grant: Grant) -> None:
        if grant.revoked_at is not None and grant.revoked_by is None:
            self.revocation_lag.observe(max(0.0, (grant.revoked_at - grant.expires_at).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
