"""Buttons on the approval card, the requester's DM, App Home and `/eice audit` answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App

from access.config.permissions import Actor
from access.failpoints import failpoint
from bot.actions import Action
from bot.listeners import audit_pages, decisions
from bot.listeners.home import publish_home
from bot.listeners.replies import lazy_job, reply, user_of

if TYPE_CHECKING:
    from bot.context import Bot

Decision = Callable[["Bot", Actor, str], str]


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
            target = str(action.get("value") or "")
            user_id = user_of(body)
            actor = bot.directory.actor(user_id)
            try:
                text = decide(bot, actor, target)
            finally:
                if (body.get("container") or {}).get("type") == "view":
                    publish_home(bot, user_id)
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
