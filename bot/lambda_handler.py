"""AWS Lambda entry points: Slack events (lazy listeners self-invoke), the tick, migrations."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.adapter.aws_lambda import SlackRequestHandler

from access.runtime import Runtime
from access.settings import get_settings
from bot.app import build_app, web_client
from bot.context import Bot

log = logging.getLogger(__name__)
TICK_S = 60.0  # serverless.yml schedules the tick at rate(1 minute)


class LambdaBot:
    """Built once per container, reused across invocations."""

    def __init__(self) -> None:
        settings = get_settings()
        logging.getLogger().setLevel(settings.eice_log_level)  # Lambda's runtime set up the handler
        self.settings = settings
        self.rt = Runtime.from_settings(settings)
        self.bot = Bot.create(self.rt, web_client(settings))
        # No dispatcher thread here: `kick` after each lazy listener delivers inline.
        self.handler = SlackRequestHandler(build_app(self.rt, settings, bot=self.bot))


_instance: LambdaBot | None = None


def _bot() -> LambdaBot:
    global _instance
    if _instance is None:
        _instance = LambdaBot()
    return _instance


def reset() -> None:
    """Forget the cached bot (tests change the environment between cases)."""
    global _instance
    _instance = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`POST /slack/events` from API Gateway (v1 or v2), and the lazy self-invocations.

    Args:
        event: the API Gateway event (or the lazy event Bolt sent itself).
        context: the Lambda context (function name and ARN are used for self-invocation).
    """
    return _bot().handler.handle(event, context)


def tick_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The EventBridge `rate(1 minute)` tick: reaper and collector; the reconciler once per
    `EICE_RECONCILER_INTERVAL_S` and the chain head once per `EICE_CHAIN_WITNESS_INTERVAL_S`
    (as `eice serve` runs them); then the outbox."""
    from access.audit.collector import chain_witness
    from access.scheduler.tick import due_this_tick, tick

    lam = _bot()
    now, settings = lam.rt.clock.now(), lam.settings
    result = tick(lam.rt, reconcile_too=due_this_tick(now, settings.eice_reconciler_interval_s, TICK_S))
    if due_this_tick(now, settings.eice_chain_witness_interval_s, TICK_S):
        result["chain_head"] = chain_witness(lam.rt)
    result["outbox_sent"] = lam.bot.dispatcher.drain()
    return result


def migrate_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Bring the database schema to the newest revision."""
    from access.migrate import current, upgrade

    url = get_settings().eice_database_url
    upgrade(url)
    return {"revision": current(url)}
