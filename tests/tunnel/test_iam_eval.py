"""The sandbox's IAM evaluator against AWS's documented semantics (actions, resources,
explicit deny, the grant's own policy), one behaviour a row; the condition operators are
in test_iam_conditions."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.aws.iam_eval import evaluate
from tests.tunnel.iam_policies import EP, OPEN, allow, decide

ACTION_RESOURCE_ROWS: list[tuple[str, dict[str, Any], str, str, bool]] = [
    ("exact_action", {"Action": OPEN, "Resource": EP}, OPEN, EP, True),
    (
        "action_is_case_insensitive",
        {"Action": "EC2-Instance-Connect:opentunnel", "Resource": EP},
        OPEN,
        EP,
        True,
    ),
    ("action_wildcard", {"Action": "ec2-instance-connect:*", "Resource": EP}, OPEN, EP, True),
    (
        "action_question_mark",
        {"Action": "ec2-instance-connect:OpenTunne?", "Resource": EP},
        OPEN,
        EP,
        True,
    ),
    (
        "other_action",
        {"Action": "ec2-instance-connect:SendSSHPublicKey", "Resource": EP},
        OPEN,
        EP,
        False,
    ),
    ("action_list", {"Action": ["ec2:Describe*", OPEN], "Resource": EP}, OPEN, EP, True),
    (
        "not_action_excludes",
        {"NotAction": "ec2-instance-connect:*", "Resource": "*"},
        OPEN,
        EP,
        False,
    ),
    ("not_action_allows_others", {"NotAction": "iam:*", "Resource": "*"}, OPEN, EP, True),
    ("resource_star", {"Action": OPEN, "Resource": "*"}, OPEN, EP, True),
    ("resource_is_case_sensitive", {"Action": OPEN, "Resource": EP.upper()}, OPEN, EP, False),
    (
        "resource_wildcard_id",
        {"Action": OPEN, "Resource": "arn:aws:ec2:*:*:instance-connect-endpoint/*"},
        OPEN,
        EP,
        True,
    ),
    ("other_endpoint", {"Action": OPEN, "Resource": EP + "x"}, OPEN, EP, False),
    ("not_resource_excludes", {"Action": OPEN, "NotResource": EP}, OPEN, EP, False),
    (
        "not_resource_allows_others",
        {"Action": OPEN, "NotResource": "arn:aws:ec2:*:*:instance/*"},
        OPEN,
        EP,
        True,
    ),
    (
        "resource_policy_variable",
        {"Action": "iam:GetUser", "Resource": "arn:aws:iam::1:user/${aws:username}"},
        "iam:GetUser",
        "arn:aws:iam::1:user/dave",
        True,
    ),
    ("statement_without_resource_never_applies", {"Action": OPEN}, OPEN, EP, False),
]


@pytest.mark.parametrize(
    ("statement", "action", "resource", "expected"),
    [row[1:] for row in ACTION_RESOURCE_ROWS],
    ids=[row[0] for row in ACTION_RESOURCE_ROWS],
)
def test_action_and_resource(statement: dict[str, Any], action: str, resource: str, expected: bool) -> None:
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **statement}]}
    context = {"aws:username": "dave"}
    assert decide(policy, context, action=action, resource=resource) is expected


def test_no_policies_is_an_implicit_deny() -> None:
    decision = evaluate([], action=OPEN, resource=EP, context={})
    assert (decision.allowed, decision.reason) == (False, "implicit-deny")


def test_explicit_deny_beats_allow_and_names_the_statement() -> None:
    deny = {"Statement": {"Sid": "NoTunnels", "Effect": "Deny", "Action": "*", "Resource": "*"}}
    decision = evaluate([allow(), deny], action=OPEN, resource=EP, context={})
    assert (decision.allowed, decision.reason, decision.matched) == (
        False,
        "explicit-deny",
        ("NoTunnels",),
    )


def test_deny_whose_condition_fails_does_not_apply() -> None:
    deny = {
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}},
            }
        ]
    }
    decision = evaluate([allow(), deny], action=OPEN, resource=EP, context={"aws:SourceIp": "127.0.0.1"})
    assert decision.allowed


def test_allow_reports_the_matching_statement_ids() -> None:
    policy = allow(Sid="Slice0")
    assert evaluate([policy], action=OPEN, resource=EP, context={}).matched == ("Slice0",)


def test_grant_shaped_policy_allows_only_its_window_port_ip_and_duration() -> None:
    policy = allow(
        {
            "NumericEquals": {"ec2-instance-connect:remotePort": "22"},
            "IpAddress": {"ec2-instance-connect:privateIpAddress": "10.0.1.4/32"},
            "NumericLessThanEquals": {"ec2-instance-connect:maxTunnelDuration": "1800"},
            "DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
            "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:30:00Z"},
        }
    )
    good = {
        "ec2-instance-connect:remotePort": "22",
        "ec2-instance-connect:privateIpAddress": "10.0.1.4",
        "ec2-instance-connect:maxTunnelDuration": "1800",
        "aws:CurrentTime": "2030-01-01T00:10:00Z",
    }
    assert decide(policy, good)
    for key, bad in [
        ("ec2-instance-connect:remotePort", "3389"),
        ("ec2-instance-connect:privateIpAddress", "10.0.1.5"),
        ("ec2-instance-connect:maxTunnelDuration", "3600"),
        ("aws:CurrentTime", "2030-01-01T00:31:00Z"),
    ]:
        assert not decide(policy, {**good, key: bad}), key
