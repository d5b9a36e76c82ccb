"""One error surface for every listener: AccessError -> its message; anything else -> generic."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from slack_sdk.webhook import WebhookClient

from access.errors import AccessError
from bot.commands import UsageError

if TYPE_CHECKING:
    from bot.context import Bot

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])


def user_of(body: dict[str, Any]) -> str:
    """The Slack user behind a command, click or event body."""
    if "user_id" in body:
        return str(body["user_id"])
    user = body.get("user")
    if isinstance(user, dict):
        return str(user.get("id", ""))
    event = body.get("event") or {}
    return str(event.get("user", ""))


def reply(bot: Bot, body: dict[str, Any], text: str) -> None:
    """An ephemeral answer: through the response URL when there is one, else a DM."""
    url = body.get("response_url")
    try:
        if url:
            WebhookClient(url, timeout=10).send(text=text, response_type="ephemeral", replace_original=False)
        else:
            bot.client.chat_postMessage(channel=user_of(body), text=text)
    except Exception as exc:  # the answer is lost; the action itself already happened
        log.warning("could not answer %s: %s", user_of(body), type(exc).__name__)


def run_guarded(
    bot: Bot, name: str, fn: Callable[[], None], body: dict[str, Any], *, kick: bool = True
) -> None:
    """Run a listener's work: errors become ephemeral replies; the outbox is kicked after.

    Args:
        bot: the services (for the reply and the outbox).
        name: the listener's name, for the log.
        fn: the work.
        body: the Slack body the work answers.
        kick: deliver the outbox afterwards (command workers leave that to the server).
    """
    try:
        fn()
    except (AccessError, UsageError) as exc:
        reply(bot, body, f":warning: {exc.message}")
    except Exception:
        ref = secrets.token_hex(4)
        log.exception("listener %s failed (ref %s)", name, ref)
        reply(bot, body, f":x: Something went wrong on our side (ref `{ref}`).")
    finally:
        if kick:
            bot.dispatcher.kick()


def lazy_job(bot: Bot) -> Callable[[F], F]:
    """Wrap a lazy listener in `run_guarded`; once it is over, its request leaves the inbox.

    The wrapper keeps the function's name and signature (Bolt finds lazy functions by
    name on Lambda and injects arguments by parameter name).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> None:
            body: dict[str, Any] = kwargs.get("body") or {}
            try:
                run_guarded(bot, fn.__name__, lambda: fn(*args, **kwargs), body)
            finally:
                if bot.inbox is not None:
                    bot.inbox.settle(body)

        return wrapped  # type: ignore[return-value]

    return decorate
