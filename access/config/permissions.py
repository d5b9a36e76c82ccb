"""Small pure predicates: who may request, approve, revoke, link. Each returns a Verdict."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from access.config.model import BreakGlass, Config


@dataclass(frozen=True)
class Actor:
    """A person acting, with the user groups Slack says they are in."""

    user_id: str
    groups: frozenset[str] = field(default_factory=frozenset)

    def is_in(self, ids: Iterable[str]) -> bool:
        """True when the actor's user ID, or one of their groups, is among `ids`."""
        return any(i == self.user_id or i in self.groups for i in ids)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Verdict(True)


def deny(reason: str) -> Verdict:
    return Verdict(False, reason)


def can_request(actor: Actor, requesters: Collection[str] | None) -> Verdict:
    """Anyone may ask unless the rule lists its requesters."""
    if requesters is None or actor.is_in(requesters):
        return ALLOW
    return deny("you are not among the requesters this instance's rule allows")


def can_approve(
    actor: Actor,
    *,
    requester_id: str,
    approvers: Collection[str],
    allow_self_approval: bool,
    status: str,
    deadline: datetime,
    now: datetime,
) -> Verdict:
    """Re-checked at click time: approver rights, self-approval, state and time-out."""
    if status != "pending":
        return deny(f"this request is already {status}")
    if now >= deadline:
        return deny("this request timed out before it was approved")
    if actor.user_id == requester_id and not allow_self_approval:
        return deny("you cannot approve your own request")
    if not actor.is_in(approvers):
        return deny("you are not an approver for this instance")
    return ALLOW


def can_break_glass(actor: Actor, break_glass: BreakGlass) -> Verdict:
    """Break-glass self-approval is off unless configured, and may be limited to some people."""
    if not break_glass.enabled:
        return deny("break-glass is not enabled in this workspace")
    if break_glass.requesters is not None and not actor.is_in(break_glass.requesters):
        return deny("you are not allowed to use break-glass")
    return ALLOW


def is_admin(actor: Actor, config: Config) -> bool:
    return actor.is_in(config.defaults.admins)


def can_revoke(actor: Actor, *, requester_id: str, approvers: Collection[str], config: Config) -> Verdict:
    """The requester, an approver of the grant's rule, or an admin may end a grant early."""
    if actor.user_id == requester_id or actor.is_in(approvers) or is_admin(actor, config):
        return ALLOW
    return deny("only the requester, an approver or an admin can revoke this grant")


def can_extend(actor: Actor, *, requester_id: str, config: Config) -> Verdict:
    """The requester (whose extension then needs approval again) or an admin may ask to extend."""
    if actor.user_id == requester_id or is_admin(actor, config):
        return ALLOW
    return deny("only the requester or an admin can extend this grant")


def can_link(actor: Actor, config: Config) -> Verdict:
    if is_admin(actor, config):
        return ALLOW
    return deny("only admins can link users to IAM principals")
