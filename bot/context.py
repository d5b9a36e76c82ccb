"""The per-process pieces every listener needs, built once (never put in Bolt's context)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from access.runtime import Runtime
from bot.directory import SlackDirectory
from bot.metrics import BotMetrics
from bot.outbox import OutboxDispatcher
from bot.router import Router

if TYPE_CHECKING:
    from bot.inbox import Inbox
    from bot.workers import CommandWorkers


@dataclass
class Bot:
    """The runtime plus the Slack-side services: directory, outbox dispatcher, router, metrics.

    `workers`, when set, runs `/eice` commands after their ack in worker processes
    (`eice serve`); without it they run as Bolt lazy listeners in this process. `inbox`,
    when set, keeps acked commands and decision clicks until their work is over.
    """

    rt: Runtime
    client: WebClient
    directory: SlackDirectory
    dispatcher: OutboxDispatcher
    router: Router
    metrics: BotMetrics
    workers: CommandWorkers | None = None
    inbox: Inbox | None = None

    @classmethod
    def create(
        cls,
        rt: Runtime,
        client: WebClient,
        *,
        metrics: BotMetrics | None = None,
        workers: CommandWorkers | None = None,
        inbox: Inbox | None = None,
    ) -> Bot:
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
            workers=workers,
            inbox=inbox,
        )
