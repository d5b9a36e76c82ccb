"""`/eice audit` answers one page at a time; Previous/Next buttons fetch the page they name."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from access.audit.queries import audit_query, out_of_band_events
from access.errors import InvalidInput
from bot.actions import AuditAction
from bot.audit_blocks import PAGE_SIZE, AuditQuery, audit_page_blocks, parse_page_value
from bot.listeners.replies import lazy_job

if TYPE_CHECKING:
    from bot.context import Bot

log = logging.getLogger(__name__)


def audit_page(bot: Bot, query: AuditQuery, query_text: str, page: int) -> tuple[str, list[dict[str, Any]]]:
    """Fetch one page (`PAGE_SIZE` grants, plus one row to know whether more follow) and render it."""
    since = datetime.now(UTC) - query.since
    with bot.rt.db.transaction() as session:
        rows = audit_query(
            session,
            since=since,
            instance_id=query.instance_id,
            user_id=query.user_id,
            grant_id=query.grant_id,
            limit=PAGE_SIZE + 1,
            offset=page * PAGE_SIZE,
        )
        out_of_band = []
        if page == 0 and not (query.user_id or query.grant_id):
            out_of_band = out_of_band_events(session, since=since, instance_id=query.instance_id, limit=10)
    shown = rows[:PAGE_SIZE]
    body = audit_page_blocks(
        shown,
        page,
        PAGE_SIZE,
        has_more=len(rows) > PAGE_SIZE,
        query=query,
        query_text=query_text,
        out_of_band=out_of_band,
    )
    text = f"Audit: {query.describe()}, page {page + 1} ({len(shown)} grant{'' if len(shown) == 1 else 's'})"
    return text, body


def post_first_page(bot: Bot, user_id: str, channel_id: str, query: AuditQuery, query_text: str) -> None:
    """The answer to `/eice audit`: page 1 as an ephemeral message, or a DM where that fails."""
    text, body = audit_page(bot, query, query_text, 0)
    try:
        bot.client.chat_postEphemeral(channel=channel_id, user=user_id, text=text, blocks=body)
    except SlackApiError as exc:  # e.g. the bot is not in that channel
        log.info("audit answer as DM (%s)", exc.response.get("error"))
        bot.client.chat_postMessage(channel=user_id, text=text, blocks=body)


def register(app: App, bot: Bot) -> None:
    """Attach the Previous/Next handlers of `/eice audit` answers."""

    def ack_page(ack: Ack) -> None:
        ack()

    @lazy_job(bot)
    def audit_page_clicked(body: dict[str, Any]) -> None:
        action = (body.get("actions") or [{}])[0]
        query_text, query, page = parse_page_value(str(action.get("value") or ""))
        url = body.get("response_url")
        if not url:
            raise InvalidInput("this audit page can no longer be changed; run `/eice audit` again")
        text, blocks = audit_page(bot, query, query_text, page)
        response = WebhookClient(url, timeout=10).send(
            text=text, blocks=blocks, response_type="ephemeral", replace_original=True
        )
        if response.status_code != 200:
            log.warning("audit page %s not shown: %s %s", page, response.status_code, response.body)

    for action in AuditAction:
        app.action(str(action))(ack=ack_page, lazy=[audit_page_clicked])
