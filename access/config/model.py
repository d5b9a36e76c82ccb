"""The shape of `eice.toml`, validated strictly: an unknown key is a typo, not a default."""

from __future__ import annotations

import re
import string
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from access.durations import format_duration, parse_duration
from access.errors import InvalidInput
from access.grants.policy import DEPLOYMENT

SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/([\w+=,.@/-]+)$")
OS_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
LONGEST_GRANT = timedelta(days=7)  # `eice policy` previews no longer; JIT access is not standing access


def _region(value: str) -> str:
    if not REGION.match(value):
        raise ValueError(f"{value!r} is not an AWS region name (like 'us-east-1')")
    return value


def _channel_id(value: str | None) -> str | None:
    if value is not None and not SLACK_CHANNEL.match(value):
        raise ValueError(f"{value!r} is not a Slack channel ID (C...)")
    return value


def _grant_length(value: timedelta | None) -> timedelta | None:
    if value is not None and value > LONGEST_GRANT:
        raise ValueError(
            f"{format_duration(value)} is longer than a grant may be ({format_duration(LONGEST_GRANT)})"
        )
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("must be a duration such as '30m' or '4h'")
    try:
        return parse_duration(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from exc


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _slack_ids(values: list[str], *, groups: bool) -> list[str]:
    for value in values:
        if SLACK_USER.match(value) or (groups and SLACK_GROUP.match(value)):
            continue
        kind = "a Slack user ID (U...) or user-group ID (S...)" if groups else "a Slack user ID (U...)"
        raise ValueError(f"{value!r} is not {kind}")
    return values


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(Strict):
    tags: dict[str, str] = Field(default_factory=dict)
    region: str | None = None
    account: str | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return None if value is None else _region(value)

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{12}", value):
            raise ValueError("must be a 12-digit AWS account ID")
        return value


class Overrides(Strict):
    """Keys a rule may override; None means "as in [defaults]"."""

    max_duration: Duration | None = None
    approval_timeout: Duration | None = None
    approvers: list[str] | None = None
    approvals_required: int | None = Field(default=None, ge=1, le=10)
    allow_self_approval: bool | None = None
    os_user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    approvals_channel: str | None = None
    audit_channel: str | None = None
    auto_approve: bool | None = None
    requesters: list[str] | None = None
    max_tunnel_overshoot: Duration | None = None
    allow_describe: bool | None = None

    @field_validator("approvers", "requesters")
    @classmethod
    def _ids(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _slack_ids(values, groups=True)

    @field_validator("os_user")
    @classmethod
    def _os_user(cls, value: str | None) -> str | None:
        if value is not None and not OS_USER.match(value):
            raise ValueError(f"{value!r} is not a valid OS user name")
        return value

    @field_validator("approvals_channel", "audit_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return _channel_id(value)

    @field_validator("max_duration")
    @classmethod
    def _max_duration(cls, value: timedelta | None) -> timedelta | None:
        return _grant_length(value)

    @field_validator("max_tunnel_overshoot")
    @classmethod
    def _overshoot(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value > timedelta(hours=1):
            raise ValueError("can be at most 1h: no tunnel lasts longer (maxTunnelDuration)")
        return value


class Defaults(Overrides):
    max_duration: Duration = timedelta(hours=4)
    approval_timeout: Duration = timedelta(minutes=30)
    approvers: list[str] = Field(default_factory=list)
    approvals_required: int = Field(default=1, ge=1, le=10)
    allow_self_approval: bool = False
    os_user: str = "ec2-user"
    port: int = Field(default=22, ge=1, le=65535)
    approvals_channel: str | None = None
    audit_channel: str | None = None
    auto_approve: bool = False
    requesters: list[str] | None = None  # None: anyone in the workspace may ask
    max_tunnel_overshoot: Duration = timedelta(minutes=5)
    # The grant also allows ec2:DescribeInstances and ec2:DescribeInstanceConnectEndpoints
    # (read-only, any resource, for the grant's window): what `aws ec2-instance-connect ssh`
    # needs to find the instance. Off: the DM's other two commands look nothing up.
    allow_describe: bool = False
    admins: list[str] = Field(default_factory=list)

    @field_validator("admins")
    @classmethod
    def _admins(cls, values: list[str]) -> list[str]:
        return _slack_ids(values, groups=True)


class Rule(Overrides):
    name: str = Field(min_length=1, max_length=64)
    match: Match = Field(default_factory=Match)


class BreakGlass(Strict):
    enabled: bool = False
    max_duration: Duration = timedelta(hours=1)
    channel: str | None = None
    requesters: list[str] | None = None

    @field_validator("requesters")
    @classmethod
    def _ids(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _slack_ids(values, groups=True)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return _channel_id(value)

    @field_validator("max_duration")
    @classmethod
    def _max_duration(cls, value: timedelta) -> timedelta:
        return _grant_length(value) or value


class AwsSection(Strict):
    regions: list[str] = Field(default_factory=lambda: ["us-east-1"], min_length=1)
    # Names this bot's grant policies `eice-grant-<deployment>-<grant id>`, so that bots
    # sharing an AWS account (staging and prod, two workspaces) leave each other's alone.
    deployment: str = ""

    @field_validator("regions")
    @classmethod
    def _regions(cls, values: list[str]) -> list[str]:
        return [_region(value) for value in values]

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, value: str) -> str:
        if value and not DEPLOYMENT.match(value):
            raise ValueError(
                f"deployment {value!r} must be 1-20 lowercase letters, digits or '-', "
                "starting and ending with a letter or digit (it goes into IAM policy names)"
            )
        return value


class AuditSection(Strict):
    """How the CloudTrail collector allows for late delivery (FACTS: minutes on average,
    sometimes over an hour). Every poll starts `overlap` before the newest event seen; every
    `late_pass_every` a late pass reads `late_window` back. An event delivered up to
    `late_window - late_pass_every` late is collected whenever it comes."""

    overlap: Duration = timedelta(minutes=15)
    late_window: Duration = timedelta(hours=6)
    late_pass_every: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _windows(self) -> AuditSection:
        if self.late_window < self.overlap:
            raise ValueError(f"late_window ({self.late_window}) must be at least overlap ({self.overlap})")
        if self.late_window > timedelta(days=90):
            raise ValueError("late_window cannot exceed 90 days (CloudTrail keeps no more)")
        if self.late_pass_every < timedelta(minutes=1):
            raise ValueError("late_pass_every must be at least 1 minute")
        if self.late_pass_every > self.late_window - self.overlap:
            raise ValueError(
                f"late_pass_every ({self.late_pass_every}) must be at most late_window - overlap "
                f"({self.late_window - self.overlap}): passes further apart leave delays unread"
            )
        return self


TEMPLATE_FIELDS = ("account", "email_local", "email", "user_id")  # what resolve_principal fills in
TEMPLATE_EXAMPLE = "'arn:aws:iam::{account}:role/eice/{email_local}'"


def _check_template(value: str) -> None:
    """`principal_template` must be an ARN with only the known placeholders, plain (no
    attribute, index, conversion or format spec), that yields a role or user ARN."""
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:  # an unclosed or stray brace
        raise ValueError(f"principal_template {value[:80]!r}: {exc}; e.g. {TEMPLATE_EXAMPLE}") from None
    names = [name for _text, name, _spec, _conv in parts if name is not None]
    for _text, name, spec, conversion in parts:
        if name is not None and name not in TEMPLATE_FIELDS:
            raise ValueError(
                f"principal_template: {{{name}}} is not a placeholder it can fill "
                f"(use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})"
            )
        if spec or conversion:
            raise ValueError(f"principal_template: {{{name}}} takes no conversion or format spec")
    sample = value.format(
        account="123456789012", email_local="alice", email="alice@example.com", user_id="U0ALICE"
    )
    if not names or not PRINCIPAL_ARN.match(sample):
        raise ValueError(
            f"principal_template {value[:80]!r} must give an IAM role or user ARN from "
            f"placeholders, e.g. {TEMPLATE_EXAMPLE}"
        )


class Config(Strict):
    """A whole `eice.toml`."""

    aws: AwsSection = Field(default_factory=AwsSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    defaults: Defaults = Field(default_factory=Defaults)
    rules: list[Rule] = Field(default_factory=list)
    principals: dict[str, str] = Field(default_factory=dict)
    break_glass: BreakGlass = Field(default_factory=BreakGlass)

    @field_validator("principals")
    @classmethod
    def _principals(cls, values: dict[str, str]) -> dict[str, str]:
        for key, value in values.items():
            if key == "principal_template":
                _check_template(value)
                continue
            if not SLACK_USER.match(key):
                raise ValueError(f"key {key!r} is not a Slack user ID (U...)")
            if not PRINCIPAL_ARN.match(value):
                raise ValueError(f"{key}: {value!r} is not an IAM role or user ARN")
        return values

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Config:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self

    @model_validator(mode="after")
    def _approvals_can_be_given(self) -> Config:
        """A rule that names only users (no group) must name at least as many as it needs
        approvals: else its requests could never be approved. No approvers at all is the
        safe default (nobody can approve until configured) and stays allowed."""
        d = self.defaults
        for name, rule in [("defaults", d), *((f"rule {r.name!r}", r) for r in self.rules)]:
            approvers = d.approvers if rule.approvers is None else rule.approvers
            needed = d.approvals_required if rule.approvals_required is None else rule.approvals_required
            auto = d.auto_approve if rule.auto_approve is None else rule.auto_approve
            users = set(approvers)
            if auto or not users or any(SLACK_GROUP.match(a) for a in users) or len(users) >= needed:
                continue
            raise ValueError(
                f"{name} needs {needed} approvals but names only {len(users)} approver(s): "
                "its requests could never be approved"
            )
        return self

    @property
    def principal_template(self) -> str | None:
        return self.principals.get("principal_template")

    @property
    def principal_map(self) -> dict[str, str]:
        return {k: v for k, v in self.principals.items() if k != "principal_template"}
