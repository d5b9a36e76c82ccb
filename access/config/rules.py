"""Which rule applies to an instance, and the effective settings it yields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from access.config.model import Config, Rule


@dataclass(frozen=True)
class Target:
    """What rules match on: the instance's tags, region and account."""

    tags: dict[str, str]
    region: str
    account_id: str


@dataclass(frozen=True)
class EffectiveRule:
    """[defaults] with the first matching [[rules]] entry laid over it."""

    name: str
    max_duration: timedelta
    approval_timeout: timedelta
    approvers: tuple[str, ...]
    approvals_required: int
    allow_self_approval: bool
    os_user: str
    port: int
    approvals_channel: str | None
    audit_channel: str | None
    auto_approve: bool
    requesters: tuple[str, ...] | None
    max_tunnel_overshoot: timedelta
    allow_describe: bool


def rule_matches(rule: Rule, target: Target) -> bool:
    """All of a rule's match conditions hold for the target (an empty match matches all)."""
    match = rule.match
    if match.region is not None and match.region != target.region:
        return False
    if match.account is not None and match.account != target.account_id:
        return False
    return all(target.tags.get(key) == value for key, value in match.tags.items())


def effective_rule(config: Config, target: Target) -> EffectiveRule:
    """The first rule (in file order) that matches, over the defaults."""
    d = config.defaults
    rule = next((r for r in config.rules if rule_matches(r, target)), None)

    def pick(name: str) -> Any:
        value = getattr(rule, name, None) if rule is not None else None
        return getattr(d, name) if value is None else value

    requesters = pick("requesters")
    return EffectiveRule(
        name=rule.name if rule else "defaults",
        max_duration=pick("max_duration"),
        approval_timeout=pick("approval_timeout"),
        approvers=tuple(pick("approvers")),
        approvals_required=pick("approvals_required"),
        allow_self_approval=pick("allow_self_approval"),
        os_user=pick("os_user"),
        port=pick("port"),
        approvals_channel=pick("approvals_channel"),
        audit_channel=pick("audit_channel"),
        auto_approve=pick("auto_approve"),
        requesters=None if requesters is None else tuple(requesters),
        max_tunnel_overshoot=pick("max_tunnel_overshoot"),
        allow_describe=pick("allow_describe"),
    )
