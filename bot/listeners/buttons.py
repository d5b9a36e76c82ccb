"""Buttons on the approval card, the requester's DM, App Home and `/eice audit` answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App

from access.config.permissions import Actor
from bot.actions import Action
from bot.listeners import audit_pages, decisions
from bot.listeners.home import publish_home
from bot.listeners.replies import lazy_job, reply, user_of

if TYPE_CHECKING:
    from bot.context import Bot

Decision = Callable[["Bot", Actor, str], str]


def _ack(ack: Ack) -> None:
    ack()


def register(app: App, bot: Bot) -> None:
    """Attach every button's handler (acks at once; the work runs in a lazy listener)."""

    def on_click(decide: Decision) -> Callable[[dict[str, Any]], None]:
        def clicked(body: dict[str, Any]) -> None:
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
        app.action(str(action))(ack=_ack, lazy=[lazy_job(bot)(fn)])
    audit_pages.register(app, bot)
