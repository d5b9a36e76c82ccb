"""The Bolt app: one sync core, the same listeners in Socket Mode, HTTP and Lambda."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from access.errors import ConfigError
from access.runtime import Runtime
from access.settings import Settings
from bot.context import Bot
from bot.listeners import register_listeners


def web_client(settings: Settings) -> WebClient:
    """A WebClient for the bot token and the configured API URL (the sandbox in tests)."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set")
    base = settings.eice_slack_api_url
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=base if base.endswith("/") else base + "/",
        timeout=10,
        # No transparent retry: a post whose answer was lost would be posted twice. The
        # outbox retries instead, and looks for the card before posting it again.
        retry_handlers=[],
    )


class _TokenFromClient(logging.Filter):
    """Bolt warns at every start that SLACK_BOT_TOKEN in the environment goes unused when a
    client is given; it is the same token, so the warning says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


BOLT_LOG = logging.getLogger("eice.bolt")
BOLT_LOG.addFilter(_TokenFromClient())


def build_app(
    rt: Runtime,
    settings: Settings,
    *,
    slack_client: WebClient | None = None,
    bot: Bot | None = None,
) -> App:
    """Build the Bolt app with every listener registered.

    Args:
        rt: the runtime (database, config, AWS adapters, clock).
        settings: token and signing secret come from here.
        slack_client: the WebClient to use (default: one for the settings' API URL).
        bot: pre-built services (the server passes its own, to run their dispatcher thread).
    """
    if settings.slack_signing_secret is None:
        raise ConfigError("SLACK_SIGNING_SECRET is not set")
    client = slack_client or (bot.client if bot is not None else web_client(settings))
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=True,
        token_verification_enabled=False,
        logger=BOLT_LOG,
        # A few lazy workers: the AWS and DB work after the ack must not starve the acks.
        listener_executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="eice-lazy"),
    )
    register_listeners(app, bot or Bot.create(rt, client))
    return app
