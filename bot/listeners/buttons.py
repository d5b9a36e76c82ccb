"""Buttons on the approval card, the requester's DM, App Home and `/eice audit` answers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App

from access.config.permissions import Actor
from access.failpoints import failpoint
from access.ids import id_pattern
from bot.actions import Action
from bot.listeners import audit_pages, decisions
from bot.listeners.home import publish_home
from bot.listeners.replies import lazy_job, reply, user_of

if TYPE_CHECKING:
    from bot.context import Bot

Decision = Callable[["Bot", Actor, str], str]
# What our decision buttons carry: a request ID (approve, deny, cancel) or a grant ID.
BUTTON_VALUE = re.compile(f"{id_pattern('r')}|{id_pattern('g')}")
NOT_OURS = ":warning: That button carries no request or grant of ours; nothing was done."
log = logging.getLogger(__name__)


def _refresh_home(bot: Bot, user_id: str) -> None:
    """Redraw App Home after a click there; a failure is logged, never put in place of the
    click's own answer (the action itself was done, or refused for its own reason)."""
    try:
        publish_home(bot, user_id)
    except Exception as exc:
        log.warning("App Home of %s not redrawn after a click: %s", user_id, exc)


def register(app: App, bot: Bot) -> None:
    """Attach every button's handler (acks at once; the work runs in a lazy listener).

    A decision (approve, deny, cancel, revoke, extend) is kept in the inbox before its ack,
    so that a server killed before the work is over does not lose it (`bot.inbox`).
    """

    def keep_and_ack(ack: Ack, body: dict[str, Any]) -> None:
        if bot.inbox is not None:
            bot.inbox.keep(body)
        ack()

    def on_click(decide: Decision) -> Callable[[dict[str, Any]], None]:
        def clicked(body: dict[str, Any]) -> None:
            failpoint("after_click_ack")
            action = (body.get("actions") or [{}])[0]
            target = action.get("value")
            user_id = user_of(body)
            if not isinstance(target, str) or not BUTTON_VALUE.fullmatch(target):
                log.warning("a %s click with a value no button of ours carries", action.get("action_id"))
                reply(bot, body, NOT_OURS)
                return
            actor = bot.directory.actor(user_id)
            try:
                text = decide(bot, actor, target)
            finally:
                container = body.get("container")
                if isinstance(container, dict) and container.get("type") == "view":
                    _refresh_home(bot, user_id)
            reply(bot, body, text)

        return clicked

    def approve_clicked(body: dict[str, Any]) -> None:
        on_click(decisions.approve)(body)

    def deny_clicked(body: dict[str, Any]) -> None:
        on_click(decisions.deny)(body)

    def cancel_clicked(body: dict[str, Any]) -> None:
        on_click(decisions.cancel)(body)

    def revoke_clicked(body: dict[str, Any]) -> None:
        on_click(decisions.revoke)(body)

    def extend_clicked(body: dict[str, Any]) -> None:
        on_click(lambda b, a, g: decisions.extend(b, a, g, None))(body)

    for action, fn in (
        (Action.APPROVE, approve_clicked),
        (Action.DENY, deny_clicked),
        (Action.CANCEL, cancel_clicked),
        (Action.REVOKE, revoke_clicked),
        (Action.EXTEND, extend_clicked),
    ):
        app.action(str(action))(ack=keep_and_ack, lazy=[lazy_job(bot)(fn)])
    audit_pages.register(app, bot)


RETIRED = ":warning: That button is no longer in use; nothing was done. `/eice help` lists what is."


def register_fallback(app: App, bot: Bot) -> None:
    """Any other button (one on an old message whose action was renamed or removed): acked,
    and its clicker told, instead of Bolt's 404 that leaves the click spinning."""

    def ack_only(ack: Ack) -> None:
        ack()

    @lazy_job(bot)
    def retired_clicked(body: dict[str, Any]) -> None:
        action = (body.get("actions") or [{}])[0]
        log.warning("a click on %r, which no listener takes", str(action.get("action_id"))[:64])
        reply(bot, body, RETIRED)

    app.action(re.compile(".+"))(ack=ack_only, lazy=[retired_clicked])
