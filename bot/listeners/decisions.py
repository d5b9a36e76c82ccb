"""The edge's units of work: open the transaction, call the flow, then do the IAM part after commit.

Shared by slash commands, card buttons, DM buttons and App Home buttons.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from access import workflows
from access.access_requests import flows as requests
from access.access_requests import withdraw
from access.access_requests.models import AccessRequest
from access.access_requests.prepare import RequestInput, prepare_request
from access.config.permissions import Actor, can_extend
from access.config.rules import Target, effective_rule
from access.durations import format_duration, parse_duration
from access.errors import InvalidInput, NotFound, NotPermitted
from access.grants import flows as grants
from access.grants.models import Grant

if TYPE_CHECKING:
    from bot.context import Bot

DEFAULT_EXTENSION = timedelta(minutes=30)


def approve(bot: Bot, actor: Actor, request_id: str) -> str:
    outcome = workflows.approve_request(bot.rt, request_id, actor)
    if outcome.grant_id:
        return f"Approved. Grant `{outcome.grant_id}` is on its way."
    r = outcome.request
    return f"Approval recorded ({len(outcome.approvals)} of {r.approvals_required})."


def deny(bot: Bot, actor: Actor, request_id: str) -> str:
    request = workflows.deny_request(bot.rt, request_id, actor)
    return f"Request `{request.id}` denied."


def cancel(bot: Bot, actor: Actor, request_id: str) -> str:
    with bot.rt.db.transaction() as session:
        request = withdraw.cancel(session, bot.rt, request_id, actor)
    return f"Request `{request.id}` cancelled."


def revoke(bot: Bot, actor: Actor, grant_id: str) -> str:
    status = workflows.revoke_now(bot.rt, grant_id, actor, reason=f"revoked early by {actor.user_id}")
    if status == "revoked":
        return f"Grant `{grant_id}` revoked."
    return f"Grant `{grant_id}` is {status}; revocation will be retried."


def extend(bot: Bot, actor: Actor, grant_id: str, duration: str | None) -> str:
    """Ask for more time on a live grant: a new request that extends it (approval re-runs)."""
    rt = bot.rt
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        original = session.get(AccessRequest, grant.request_id)
        verdict = can_extend(actor, requester_id=grant.requester_id, config=rt.config)
        if not verdict:
            raise NotPermitted(verdict.reason)
        if grant.status not in ("applying", "active"):
            raise InvalidInput(f"grant {grant_id} is {grant.status}; request access again")
        instance_id, port, os_user = grant.instance_id, grant.port, grant.os_user
        replaces = grant.policy_name
        held = grant.expires_at - grant.starts_at
        tags = original.instance_tags if original else {}
        rule = effective_rule(rt.config, Target(tags, grant.region, grant.account_id))
    if duration is None:
        # The button: 30 minutes (or the original length if shorter), within the rule's maximum.
        extra = min(DEFAULT_EXTENSION, held)
        extra = min(extra, rule.max_duration - held)
        if extra.total_seconds() < 60:
            raise InvalidInput(
                f"this grant already has the {format_duration(rule.max_duration)} the rule allows"
            )
    else:
        extra = parse_duration(duration)
        if held + extra > rule.max_duration:
            room = max(rule.max_duration - held, timedelta(0))
            raise InvalidInput(
                f"{format_duration(extra)} more would hold this grant for {format_duration(held + extra)} "
                f"in all; the rule allows {format_duration(rule.max_duration)}"
                + (f", so at most {format_duration(room)} more" if room.total_seconds() >= 60 else "")
            )
    profile = bot.directory.profile(grant.requester_id)
    prepared = prepare_request(
        rt,
        RequestInput(
            requester=actor if actor.user_id == grant.requester_id else Actor(grant.requester_id),
            instance_ref=instance_id,
            duration=format_duration(extra),
            reason=f"extension of {grant_id}",
            port=port,
            os_user=os_user,
            requester_name=profile.name,
            email=profile.email,
            replaces_policy=replaces,
        ),
    )
    with rt.db.transaction() as session:
        live = session.get(Grant, grant_id)
        outcome = requests.create_request(session, rt, prepared, extends=live)
    if outcome.grant_id:
        grants.apply_grant(rt, outcome.grant_id)
        return f"Grant `{grant_id}` extended by {format_duration(extra)}."
    return (
        f"Extension of `{grant_id}` by {format_duration(extra)} is waiting for approval "
        f"(request `{outcome.request.id}`)."
    )
