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


def lazy_job(bot: Bot) -> Callable[[F], F]:
    """Wrap a lazy listener: errors become ephemeral replies, and the outbox is kicked after.

    The wrapper keeps the function's name and signature (Bolt finds lazy functions by
    name on Lambda and injects arguments by parameter name).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> None:
            body: dict[str, Any] = kwargs.get("body") or {}
            try:
                fn(*args, **kwargs)
            except (AccessError, UsageError) as exc:
                reply(bot, body, f":warning: {exc.message}")
            except Exception:
                ref = secrets.token_hex(4)
                log.exception("listener %s failed (ref %s)", fn.__name__, ref)
                reply(bot, body, f":x: Something went wrong on our side (ref `{ref}`).")
            finally:
                bot.dispatcher.kick()

        return wrapped  # type: ignore[return-value]

    return decorate
