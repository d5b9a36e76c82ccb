"""The per-process pieces every listener needs, built once (never put in Bolt's context)."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk import WebClient

from access.runtime import Runtime
from bot.directory import SlackDirectory
from bot.metrics import BotMetrics
from bot.outbox import OutboxDispatcher
from bot.router import Router


@dataclass
class Bot:
    """The runtime plus the Slack-side services: directory, outbox dispatcher, router, metrics."""

    rt: Runtime
    client: WebClient
    directory: SlackDirectory
    dispatcher: OutboxDispatcher
    router: Router
    metrics: BotMetrics

    @classmethod
    def create(cls, rt: Runtime, client: WebClient, *, metrics: BotMetrics | None = None) -> Bot:
        """Wire the services for `rt` around `client`."""
        from bot.listeners.commands import default_router

        metrics = metrics or BotMetrics()
        return cls(
            rt=rt,
            client=client,
            directory=SlackDirectory(client, rt.config),
            dispatcher=OutboxDispatcher(rt, client, on_revoked=metrics.observe_revoked),
            router=default_router(),
            metrics=metrics,
        )
