"""Which rule applies to an instance, and the effective settings it yields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

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

    def pick(name: str) -> object:
        value = getattr(rule, name, None) if rule is not None else None
        return getattr(d, name) if value is None else value

    requesters = pick("requesters")
    return EffectiveRule(
        name=rule.name if rule else "defaults",
        max_duration=pick("max_duration"),  # type: ignore[arg-type]
        approval_timeout=pick("approval_timeout"),  # type: ignore[arg-type]
        approvers=tuple(pick("approvers")),  # type: ignore[call-overload]
        approvals_required=pick("approvals_required"),  # type: ignore[arg-type]
        allow_self_approval=pick("allow_self_approval"),  # type: ignore[arg-type]
        os_user=pick("os_user"),  # type: ignore[arg-type]
        port=pick("port"),  # type: ignore[arg-type]
        approvals_channel=pick("approvals_channel"),  # type: ignore[arg-type]
        audit_channel=pick("audit_channel"),  # type: ignore[arg-type]
        auto_approve=pick("auto_approve"),  # type: ignore[arg-type]
        requesters=None if requesters is None else tuple(requesters),  # type: ignore[call-overload]
        max_tunnel_overshoot=pick("max_tunnel_overshoot"),  # type: ignore[arg-type]
    )
