"""Turns one outbox row into Slack calls: the card, its thread, DMs and audit-channel alerts.

Each handler makes its Slack calls and returns what must be written in the same
transaction that marks the row sent (the card's ts, the DM's ts), so a crash between
the post and the commit at worst posts again; it never loses the ts of a card it keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from access.access_requests.flows import current_rule
from access.access_requests.models import AccessRequest
from access.access_requests.service import approvers_of
from access.grants.flows import scope_of
from access.grants.models import Grant
from access.grants.policy import max_tunnel_duration_at
from access.runtime import Runtime
from bot import activity, blocks

log = logging.getLogger(__name__)

After = Callable[[Session], None]


@dataclass(frozen=True)
class Note:
    """A detached copy of an outbox row (no session crosses into Slack calls)."""

    id: int
    kind: str
    request_id: str | None
    grant_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # earlier deliveries that failed (their outcome may be unknown)


@dataclass(frozen=True)
class Snapshot:
    request: AccessRequest | None
    grant: Grant | None
    approvals: list[str]


class Notifier:
    """Renders and sends one note; `deliver` returns the writes to commit with `mark_sent`.

    Args:
        rt: the runtime (database, config, clock).
        client: a WebClient without rate-limit retries (the outbox retries, honouring 429s).
        on_revoked: told each revoked grant (for the revocation-lag metric).
    """

    def __init__(
        self, rt: Runtime, client: WebClient, *, on_revoked: Callable[[Grant], None] | None = None
    ) -> None:
        self.rt = rt
        self.client = client
        self.on_revoked = on_revoked
        self.handlers: dict[str, Callable[[Note, Snapshot], After | None]] = {
            "request.created": self._card,
            "request.approval": self._card,
            "request.approved": self._card,
            "request.cancelled": self._card,
            "request.denied": self._denied,
            "request.expired": self._expired,
            "grant.active": self._active,
            "grant.updated": self._extended,
            "grant.failed": self._failed,
            "grant.failed_cleaned": self._thread_only,
            "grant.revoked": self._revoked,
            "grant.reminder": self._reminder,
            "grant.overdue": self._alert,
            "grant.drift": self._alert,
            "policy.orphan": self._alert,
            "break_glass": self._alert,
            "audit.connection": self._connection,
            "audit.out_of_band": self._out_of_band,
            "audit.chain_head": self._chain_head,
        }

    def deliver(self, note: Note) -> After | None:
        handler = self.handlers.get(note.kind)
        if handler is None:
            log.warning("outbox: no renderer for %s; dropping it", note.kind)
            return None
        return handler(note, self._snapshot(note))

    def _snapshot(self, note: Note) -> Snapshot:
        with self.rt.db.transaction() as s:
            request = s.get(AccessRequest, note.request_id) if note.request_id else None
            grant = s.get(Grant, note.grant_id) if note.grant_id else None
            if grant is None and request is not None:
                grant = s.scalars(select(Grant).where(Grant.request_id == request.id)).first()
                if grant is None and request.extends_grant_id:
                    grant = s.get(Grant, request.extends_grant_id)
            if request is None and grant is not None:
                request = s.get(AccessRequest, grant.request_id)
            approvals = approvers_of(s, request.id) if request is not None else []
            return Snapshot(request, grant, approvals)

    # the card and its thread

    def _card_channel(self, request: AccessRequest) -> str | None:
        return request.card_channel or request.approvals_channel or self.rt.config.defaults.approvals_channel

    def _sync_card(self, snap: Snapshot, *, retry: bool = True) -> After | None:
        """Post the card, or update it in place when it already has a ts.

        On a retry an earlier post may have landed with its answer lost: the channel is
        searched for that card first, so a request never gets two.
        """
        request = snap.request
        if request is None:
            return None
        channel = self._card_channel(request)
        if channel is None:
            log.warning("request %s: no approvals channel configured; no card", request.id)
            return None
        text, body = blocks.approval_card(request, snap.approvals, grant=snap.grant)
        if not request.card_ts and retry:
            found = self._find_card(channel, request.id)
            if found is not None:
                request.card_channel, request.card_ts = channel, found
                with self.rt.db.transaction() as s:
                    _store_card(request.id, channel, found)(s)
        if request.card_ts and request.card_channel:
            self.client.chat_update(channel=request.card_channel, ts=request.card_ts, text=text, blocks=body)
            return None
        posted = self.client.chat_postMessage(channel=channel, text=text, blocks=body)
        request.card_channel, request.card_ts = posted["channel"], posted["ts"]
        return _store_card(request.id, posted["channel"], posted["ts"])

    def _card(self, note: Note, snap: Snapshot) -> After | None:
        # Only a request's first card post, tried for the first time, can skip the search.
        return self._sync_card(snap, retry=note.attempts > 0 or note.kind != "request.created")

    def _find_card(self, channel: str, request_id: str) -> str | None:
        """The ts of a card for `request_id` already in `channel` (recent history), if any."""
        try:
            answer = self.client.conversations_history(channel=channel, limit=200)
        except SlackApiError:
            return None
        for message in answer.get("messages") or []:
            top_level = not message.get("thread_ts") and message.get("bot_id")
            if top_level and request_id in str(message.get("blocks")):
                return str(message["ts"])
        return None

    def _thread(self, snap: Snapshot, text: str) -> None:
        request = snap.request
        if request is None:
            return
        if not request.card_ts:
            after = self._sync_card(snap)  # the card failed or is late: post it first
            if after is not None:
                with self.rt.db.transaction() as s:
                    after(s)
        if request.card_ts and request.card_channel:
            msg, body = blocks.notice(text)
            self.client.chat_postMessage(
                channel=request.card_channel, thread_ts=request.card_ts, text=msg, blocks=body
            )

    # DMs

    def _dm(self, user_id: str, content: tuple[str, blocks.Blocks]) -> Any:
        return self.client.chat_postMessage(channel=user_id, text=content[0], blocks=content[1])

    def _max_tunnel_s(self, grant: Grant) -> int:
        return max_tunnel_duration_at(scope_of(grant), self.rt.clock.now())

    def _denied(self, note: Note, snap: Snapshot) -> After | None:
        after = self._sync_card(snap)
        if snap.request is not None:
            r = snap.request
            why = f": {r.decision_note}" if r.decision_note else ""
            self._dm(
                r.requester_id,
                blocks.notice(
                    f":no_entry: Your request `{r.id}` for {blocks.instance_label(r)} was denied "
                    f"by <@{r.decided_by}>{why}."
                ),
            )
        return after

    def _expired(self, note: Note, snap: Snapshot) -> After | None:
        after = self._sync_card(snap)
        if snap.request is not None:
            r = snap.request
            self._dm(
                r.requester_id,
                blocks.notice(
                    f":alarm_clock: Your request `{r.id}` for {blocks.instance_label(r)} timed out:"
                    " "
                    "no approver answered in time. Ask again if you still need access."
                ),
            )
        return after

    def _active(self, note: Note, snap: Snapshot) -> After | None:
        return self._grant_dm(snap, extended=False)

    def _extended(self, note: Note, snap: Snapshot) -> After | None:
        return self._grant_dm(snap, extended=True)

    def _grant_dm(self, snap: Snapshot, *, extended: bool) -> After | None:
        grant, request = snap.grant, snap.request
        if grant is None or request is None or grant.status != "active":
            return None  # revoked or failed before we got here: those notes tell the story
        verb = "extended" if extended else "applied"
        self._thread(
            snap,
            f"Grant `{grant.id}` {verb}: `{grant.policy_name}` on "
            f"`{grant.principal_arn}` until {blocks.slack_date(grant.expires_at)}.",
        )
        dm = blocks.access_dm(grant, request, max_tunnel_s=self._max_tunnel_s(grant), extended=extended)
        posted = self._dm(grant.requester_id, dm)
        return _store_dm(grant.id, posted["channel"], posted["ts"])

    def _failed(self, note: Note, snap: Snapshot) -> After | None:
        grant = snap.grant
        if grant is None:
            return None
        error = str(note.payload.get("error", "unknown error"))[:300]
        self._thread(snap, f":x: Grant `{grant.id}` could not be applied: `{error}`")
        self._dm(
            grant.requester_id,
            blocks.notice(
                f":x: Your access to `{grant.instance_id}` could not be set up: `{error}`. "
                "Nothing was left behind; try again or ask an admin."
            ),
        )
        return None

    def _thread_only(self, note: Note, snap: Snapshot) -> After | None:
        if snap.grant is not None:
            self._thread(snap, f"Grant `{snap.grant.id}` cleaned up after a failed apply.")
        return None

    def _revoked(self, note: Note, snap: Snapshot) -> After | None:
        grant = snap.grant
        if grant is None:
            return None
        if self.on_revoked is not None:
            self.on_revoked(grant)
        how = f"by <@{grant.revoked_by}>" if grant.revoked_by else "on expiry"
        when = blocks.slack_date(grant.revoked_at) if grant.revoked_at else ""
        self._thread(snap, f":lock: Grant `{grant.id}` revoked {how} {when}.")
        content = blocks.ended_dm(grant, f":lock: Your access was revoked {how} {when}.")
        if grant.dm_channel and grant.dm_ts:
            self.client.chat_update(
                channel=grant.dm_channel, ts=grant.dm_ts, text=content[0], blocks=content[1]
            )
        else:
            self._dm(grant.requester_id, content)
        return None

    def _reminder(self, note: Note, snap: Snapshot) -> After | None:
        if snap.grant is not None and snap.grant.status == "active":
            self._dm(snap.grant.requester_id, blocks.reminder(snap.grant))
        return None

    def _alert(self, note: Note, snap: Snapshot) -> After | None:
        config = self.rt.config
        channel = self._audit_channel(snap)
        if note.kind == "break_glass":
            channel = config.break_glass.channel or channel
        texts = {
            "grant.overdue": ":rotating_light: Grant `{g}` is past its expiry and not revoked yet",
            "grant.drift": ":warning: Grant `{g}` is active but its policy is missing in IAM",
            "policy.orphan": ":broom: Deleted orphan policy `{p}` from `{who}` (no active grant)",
            "break_glass": ":rotating_light: Break-glass grant `{g}` by <@{u}>; review it",
        }
        grant, request = snap.grant, snap.request
        text = texts[note.kind].format(
            g=grant.id if grant else note.grant_id,
            p=note.payload.get("policy_name", "?"),
            who=note.payload.get("principal", "?"),
            u=request.requester_id if request else "?",
        )
        if note.kind == "grant.overdue" and note.payload.get("revoked_late_s") is not None:
            late = note.payload["revoked_late_s"]
            text = f":rotating_light: Grant `{note.grant_id}` was revoked {late} s after its expiry"
        elif note.payload.get("error"):
            text += f": `{str(note.payload['error'])[:300]}`"
        if request is not None and note.kind != "policy.orphan":
            text += f" (instance `{request.instance_id}`, request `{request.id}`)"
        self._post_alert(text, channel)
        if note.kind in ("grant.overdue", "break_glass"):
            self._thread(snap, text)
        return None

    def _audit_channel(self, snap: Snapshot | None) -> str | None:
        """The audit channel of the rule the request matched (a rule may name its own; the
        rule falls back to the default one), or the default one when there is no request."""
        request = snap.request if snap is not None else None
        if request is None:
            return self.rt.config.defaults.audit_channel
        return current_rule(self.rt, request).audit_channel

    def _post_alert(self, text: str, channel: str | None) -> None:
        """Post `text` in `channel`; only logged when no channel is configured."""
        if channel is None:
            log.warning("no audit channel configured: %s", text)
            return
        self.client.chat_postMessage(channel=channel, text=text, blocks=blocks.notice(text)[1])

    # CloudTrail activity and the audit chain

    def _connection(self, note: Note, snap: Snapshot) -> After | None:
        """EICE events a grant explains: one post in the card's thread; those flagged for a
        second look (outside the grant, after its end) go to the audit channel as well."""
        self._thread(snap, activity.connection_notice(note.payload, note.grant_id))
        flagged = [event for event in activity.events_of(note.payload) if event.get("flag")]
        if flagged:
            alert = activity.connection_notice({"events": flagged}, note.grant_id)
            self._post_alert(alert, self._audit_channel(snap))
        return None

    def _out_of_band(self, note: Note, snap: Snapshot) -> After | None:
        """EICE use that no grant explains: the audit channel."""
        self._post_alert(activity.out_of_band_notice(note.payload), self._audit_channel(None))
        return None

    def _chain_head(self, note: Note, snap: Snapshot) -> After | None:
        """The audit chain's head, posted outside the database as a witness."""
        self._post_alert(activity.chain_head_notice(note.payload), self._audit_channel(None))
        return None


def _store_card(request_id: str, channel: str, ts: str) -> After:
    def write(session: Session) -> None:
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id == request_id, AccessRequest.card_ts.is_(None))
            .values(card_channel=channel, card_ts=ts)
            .execution_options(synchronize_session=False)
        )

    return write


def _store_dm(grant_id: str, channel: str, ts: str) -> After:
    def write(session: Session) -> None:
        session.execute(
            update(Grant)
            .where(Grant.id == grant_id)
            .values(dm_channel=channel, dm_ts=ts)
            .execution_options(synchronize_session=False)
        )

    return write
