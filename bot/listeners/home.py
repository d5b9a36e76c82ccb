"""App Home: my grants, my pending requests, and the requests waiting on me."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from sqlalchemy import select

from access.access_requests.models import AccessRequest, RequestStatus
from access.grants import service as grant_service
from bot import blocks
from bot.listeners.replies import lazy_job

if TYPE_CHECKING:
    from bot.context import Bot


def my_pending(bot: Bot, user_id: str, *, limit: int = 20) -> list[AccessRequest]:
    """The user's own requests still waiting for approvers, oldest first."""
    with bot.rt.db.transaction() as session:
        return list(
            session.scalars(
                select(AccessRequest)
                .where(
                    AccessRequest.requester_id == user_id,
                    AccessRequest.status == RequestStatus.PENDING,
                )
                .order_by(AccessRequest.created_at)
                .limit(limit)
            )
        )


def publish_home(bot: Bot, user_id: str) -> None:
    """Render and publish the Home tab for one user."""
    from bot.listeners.commands import waiting_on

    with bot.rt.db.transaction() as session:
        grants = list(grant_service.active_for_requester(session, user_id))
    mine = my_pending(bot, user_id)
    waiting = waiting_on(bot, user_id)[:20]
    bot.client.views_publish(user_id=user_id, view=blocks.home_view(grants, mine, waiting))


def register(app: App, bot: Bot) -> None:
    def ack_home(ack: Ack) -> None:
        ack()

    @lazy_job(bot)
    def home_opened(body: dict[str, Any]) -> None:
        event = body.get("event") or {}
        if event.get("tab", "home") == "home" and event.get("user"):
            publish_home(bot, str(event["user"]))

    app.event("app_home_opened")(ack=ack_home, lazy=[home_opened])
