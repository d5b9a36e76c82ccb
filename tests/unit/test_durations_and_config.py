"""Pure parts: durations, config validation (file, key, problem), rules and permissions."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from access.config.loader import load_config, parse_config
from access.config.permissions import Actor, can_approve, can_request
from access.config.rules import Target, effective_rule
from access.durations import format_duration, parse_duration
from access.errors import ConfigError, InvalidInput


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("90s", 90), ("2d", 172800), (" 1H ", 3600)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0m", "-5m", "5", "m", "1h1h", "30m1h2", "1.5h", "forever", "1h 30m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**6))
def test_format_is_the_inverse_of_parse(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == timedelta(seconds=seconds)


@given(st.text(max_size=50))
def test_parse_never_crashes_on_any_text(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        assert parse_duration(text) > timedelta(0)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[defaults]\nmax_duraton = "1h"', "eice.toml: defaults.max_duraton: unknown key"),
        (
            '[defaults]\nmax_duration = "soon"',
            "eice.toml: defaults.max_duration: cannot read duration",
        ),
        (
            '[defaults]\napprovers = ["bob"]',
            "eice.toml: defaults.approvers: 'bob' is not a Slack user ID",
        ),
        ("[defaults]\napprovals_required = 0", "eice.toml: defaults.approvals_required"),
        ('[principals]\nU0ALICE = "arn:aws:s3:::bucket"', "is not an IAM role or user ARN"),
        ('[[rules]]\nname = "a"\n[[rules]]\nname = "a"', "rule name 'a' is used twice"),
        ("[defaults\n", "eice.toml: not valid TOML"),
        ('[[rules]]\nname = "x"\nmatch = { account = "12" }', "rules.0.match.account"),
        (
            '[aws]\ndeployment = "Staging"',
            "eice.toml: aws.deployment: deployment 'Staging' must be 1-20 lowercase",
        ),
        ('[aws]\ndeployment = "-prod"', "aws.deployment: deployment '-prod' must be"),
        ('[aws]\ndeployment = "prod_1"', "aws.deployment: deployment 'prod_1' must be"),
        (
            '[aws]\ndeployment = "a-very-long-deployment"',
            "aws.deployment: deployment 'a-very-long-deployment'",
        ),
        (  # a typo in a placeholder loaded fine and then broke every request (KeyError)
            '[principals]\nprincipal_template = "arn:aws:iam::{acount}:role/eice/{email_local}"',
            "eice.toml: principals: principal_template: {acount} is not a placeholder it can fill",
        ),
        (
            '[principals]\nprincipal_template = "arn:aws:iam::{account}:role/{email_local"',
            "principal_template 'arn:aws:iam::{account}:role/{email_local': expected '}'",
        ),
        (
            '[principals]\nprincipal_template = "arn:aws:iam::{account}:role/{email.__class__}"',
            "{email.__class__} is not a placeholder",
        ),
        (
            '[principals]\nprincipal_template = "arn:aws:iam::{account!r}:role/x"',
            "{account} takes no conversion or format spec",
        ),
        (
            '[principals]\nprincipal_template = "arn:aws:iam::{account}:policy/{email_local}"',
            "must give an IAM role or user ARN",
        ),
        ('[break_glass]\nchannel = "#incidents"', "break_glass.channel: '#incidents' is not a Slack"),
        ('[aws]\nregions = ["us-east-1", "not a region"]', "'not a region' is not an AWS region name"),
        ('[[rules]]\nname = "x"\nmatch = { region = "moon" }', "rules.0.match.region: 'moon' is not"),
        ('[defaults]\nmax_duration = "30d"', "defaults.max_duration: 30d is longer than a grant may be (7d)"),
        ('[break_glass]\nmax_duration = "8d"', "break_glass.max_duration: 8d is longer"),
        ('[defaults]\nmax_tunnel_overshoot = "2h"', "max_tunnel_overshoot: can be at most 1h"),
        (
            '[defaults]\napprovers = ["U0BOB"]\napprovals_required = 2',
            "defaults needs 2 approvals but names only 1 approver(s): its requests could never be approved",
        ),
        (
            '[defaults]\napprovers = ["U0BOB", "U0CAROL"]\n[[rules]]\nname = "prod"\napprovals_required = 3',
            "rule 'prod' needs 3 approvals but names only 2 approver(s)",
        ),
        ('[audit]\nlate_windw = "6h"', "eice.toml: audit.late_windw: unknown key"),
        ('[audit]\nlate_window = "10m"', "late_window (0:10:00) must be at least overlap (0:15:00)"),
        ('[audit]\nlate_window = "100d"', "late_window cannot exceed 90 days"),
        ('[audit]\nlate_pass_every = "30s"', "late_pass_every must be at least 1 minute"),
        (
            '[audit]\nlate_window = "30m"',
            "late_pass_every (1:00:00) must be at most late_window - overlap (0:15:00)",
        ),
        ('[audit]\noverlap = "later"', "audit.overlap: cannot read duration"),
    ],
)
def test_bad_config_names_file_key_and_problem(toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(toml, source="eice.toml")
    assert expected in caught.value.message


@pytest.mark.parametrize(
    "template",
    [
        "arn:aws:iam::{account}:role/eice/{email_local}",
        "arn:aws:iam::{account}:user/{email}",
        "arn:aws:iam::{account}:role/{user_id}",
    ],
)
def test_good_principal_templates_are_taken(template: str) -> None:
    assert parse_config(f'[principals]\nprincipal_template = "{template}"').principal_template == template


@pytest.mark.parametrize("name", ["", "prod", "staging-2", "x", "a" * 20])
def test_good_deployment_names_are_taken(name: str) -> None:
    assert parse_config(f'[aws]\ndeployment = "{name}"', source="eice.toml").aws.deployment == name


@pytest.mark.parametrize(
    "toml",
    [
        '[defaults]\napprovers = ["U0BOB", "S0ONCALL"]\napprovals_required = 3',  # a group may hold many
        '[defaults]\napprovers = ["U0B"]\n[[rules]]\nname = "d"\napprovals_required = 2\nauto_approve = true',
        "[defaults]\napprovals_required = 2",  # nobody named yet: nobody can approve, as before
        '[aws]\nregions = ["us-gov-west-1", "ap-southeast-2"]\n[defaults]\nmax_duration = "7d"',
    ],
)
def test_configs_that_can_work_are_taken(toml: str) -> None:
    parse_config(toml, source="eice.toml")


def test_missing_config_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_defaults_without_a_file_are_safe() -> None:
    config = load_config(None)
    assert config.defaults.allow_self_approval is False
    assert config.defaults.approvers == []  # nobody can approve until configured
    assert config.break_glass.enabled is False
    # CloudTrail delivers in minutes, sometimes hours: every poll overlaps, a pass an hour goes far back.
    assert (config.audit.overlap, config.audit.late_window, config.audit.late_pass_every) == (
        timedelta(minutes=15),
        timedelta(hours=6),
        timedelta(hours=1),
    )


def test_first_matching_rule_wins_over_defaults() -> None:
    config = parse_config(
        """
[defaults]
approvals_required = 1
[[rules]]
name = "prod"
match = { tags = { env = "prod" } }
approvals_required = 2
[[rules]]
name = "all"
auto_approve = true
"""
    )
    assert effective_rule(config, Target({"env": "prod"}, "us-east-1", "1")).approvals_required == 2
    other = effective_rule(config, Target({"env": "dev"}, "us-east-1", "1"))
    assert (other.name, other.auto_approve, other.approvals_required) == ("all", True, 1)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def approve_verdict(actor: Actor, **kw: object) -> str:
    args: dict[str, object] = {
        "requester_id": "U0ALICE",
        "approvers": ["U0BOB", "S0ONCALL"],
        "allow_self_approval": False,
        "status": "pending",
        "deadline": NOW + timedelta(minutes=5),
        "now": NOW,
    }
    args.update(kw)
    return can_approve(actor, **args).reason  # type: ignore[arg-type]


def test_permission_predicates() -> None:
    assert approve_verdict(Actor("U0BOB")) == ""
    assert approve_verdict(Actor("U0X", frozenset({"S0ONCALL"}))) == ""
    assert "not an approver" in approve_verdict(Actor("U0X"))
    assert "own request" in approve_verdict(Actor("U0ALICE", frozenset({"S0ONCALL"})))
    assert approve_verdict(Actor("U0ALICE", frozenset({"S0ONCALL"})), allow_self_approval=True) == ""
    assert "timed out" in approve_verdict(Actor("U0BOB"), now=NOW + timedelta(minutes=6))
    assert "already approved" in approve_verdict(Actor("U0BOB"), status="approved")
    assert can_request(Actor("U0X"), None)
    assert not can_request(Actor("U0X"), ["U0Y"])
