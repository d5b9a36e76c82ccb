"""The sandbox's IAM condition operators against AWS's documented semantics, one behaviour
a row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tunnel.iam_policies import allow, decide

# (id, condition, context, expected)
CONDITION_ROWS: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # strings
    (
        "string_equals_match",
        {"StringEquals": {"ec2:osuser": "ec2-user"}},
        {"ec2:osuser": "ec2-user"},
        True,
    ),
    (
        "string_equals_is_case_sensitive",
        {"StringEquals": {"ec2:osuser": "ec2-user"}},
        {"ec2:osuser": "EC2-user"},
        False,
    ),
    (
        "string_equals_values_are_or",
        {"StringEquals": {"ec2:osuser": ["root", "ec2-user"]}},
        {"ec2:osuser": "ec2-user"},
        True,
    ),
    ("string_equals_missing_key_is_false", {"StringEquals": {"ec2:osuser": "ec2-user"}}, {}, False),
    (
        "condition_key_is_case_insensitive",
        {"StringEquals": {"EC2:OSUser": "ec2-user"}},
        {"ec2:osuser": "ec2-user"},
        True,
    ),
    (
        "string_not_equals_other_value",
        {"StringNotEquals": {"ec2:osuser": "root"}},
        {"ec2:osuser": "ec2-user"},
        True,
    ),
    (
        "string_not_equals_values_are_nor",
        {"StringNotEquals": {"ec2:osuser": ["root", "ec2-user"]}},
        {"ec2:osuser": "ec2-user"},
        False,
    ),
    (
        "string_not_equals_missing_key_is_true",
        {"StringNotEquals": {"ec2:osuser": "root"}},
        {},
        True,
    ),
    (
        "string_equals_ignore_case",
        {"StringEqualsIgnoreCase": {"ec2:osuser": "EC2-USER"}},
        {"ec2:osuser": "ec2-user"},
        True,
    ),
    (
        "string_not_equals_ignore_case",
        {"StringNotEqualsIgnoreCase": {"ec2:osuser": "EC2-USER"}},
        {"ec2:osuser": "ec2-user"},
        False,
    ),
    ("string_like_star", {"StringLike": {"aws:username": "ali*"}}, {"aws:username": "alice"}, True),
    (
        "string_like_question_mark_is_one_char",
        {"StringLike": {"aws:username": "al?ce"}},
        {"aws:username": "allice"},
        False,
    ),
    (
        "string_not_like",
        {"StringNotLike": {"aws:username": "bo*"}},
        {"aws:username": "alice"},
        True,
    ),
    (
        "string_like_with_policy_variable",
        {"StringLike": {"aws:PrincipalArn": "*/${aws:username}"}},
        {"aws:PrincipalArn": "arn:aws:iam::1:user/dave", "aws:username": "dave"},
        True,
    ),
    # numbers
    (
        "numeric_equals_string_number",
        {"NumericEquals": {"ec2-instance-connect:remotePort": "22"}},
        {"ec2-instance-connect:remotePort": "22"},
        True,
    ),
    (
        "numeric_equals_other_port",
        {"NumericEquals": {"ec2-instance-connect:remotePort": "22"}},
        {"ec2-instance-connect:remotePort": "3389"},
        False,
    ),
    (
        "numeric_not_equals",
        {"NumericNotEquals": {"ec2-instance-connect:remotePort": "22"}},
        {"ec2-instance-connect:remotePort": "23"},
        True,
    ),
    (
        "numeric_less_than_equals_at_bound",
        {"NumericLessThanEquals": {"ec2-instance-connect:maxTunnelDuration": "600"}},
        {"ec2-instance-connect:maxTunnelDuration": "600"},
        True,
    ),
    (
        "numeric_less_than_equals_over_bound",
        {"NumericLessThanEquals": {"ec2-instance-connect:maxTunnelDuration": "600"}},
        {"ec2-instance-connect:maxTunnelDuration": "601"},
        False,
    ),
    ("numeric_less_than_strict", {"NumericLessThan": {"n": "5"}}, {"n": "5"}, False),
    ("numeric_greater_than", {"NumericGreaterThan": {"n": "5"}}, {"n": "6"}, True),
    ("numeric_greater_than_equals", {"NumericGreaterThanEquals": {"n": "5"}}, {"n": "4"}, False),
    ("numeric_not_a_number_is_false", {"NumericEquals": {"n": "5"}}, {"n": "five"}, False),
    # dates
    (
        "date_less_than_iso",
        {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2029-12-31T23:59:59Z"},
        True,
    ),
    (
        "date_less_than_after_expiry",
        {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2030-01-01T00:00:01Z"},
        False,
    ),
    (
        "date_greater_than_before_start",
        {"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2029-01-01T00:00:00Z"},
        False,
    ),
    (
        "date_epoch_policy_value",
        {"DateGreaterThanEquals": {"aws:CurrentTime": "1893456000"}},
        {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
        True,
    ),
    (
        "date_equals_across_offsets",
        {"DateEquals": {"aws:CurrentTime": "2030-01-01T01:00:00+01:00"}},
        {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
        True,
    ),
    (
        "date_not_equals",
        {"DateNotEquals": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
        False,
    ),
    (
        "date_less_than_equals",
        {"DateLessThanEquals": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
        True,
    ),
    (
        "date_greater_than_equals",
        {"DateGreaterThanEquals": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2029-12-31T00:00:00Z"},
        False,
    ),
    (
        "date_unparseable_is_false",
        {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "tomorrow"},
        False,
    ),
    # bool
    ("bool_true", {"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "true"}, True),
    (
        "bool_json_true",
        {"Bool": {"aws:SecureTransport": True}},
        {"aws:SecureTransport": "true"},
        True,
    ),
    (
        "bool_mismatch",
        {"Bool": {"aws:SecureTransport": "true"}},
        {"aws:SecureTransport": "false"},
        False,
    ),
    # IP addresses
    (
        "ip_address_in_cidr",
        {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}},
        {"aws:SourceIp": "127.0.0.1"},
        True,
    ),
    (
        "ip_address_outside_cidr",
        {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
        {"aws:SourceIp": "127.0.0.1"},
        False,
    ),
    (
        "ip_address_bare_ip_is_slash_32",
        {"IpAddress": {"ec2-instance-connect:privateIpAddress": "10.0.1.4"}},
        {"ec2-instance-connect:privateIpAddress": "10.0.1.4"},
        True,
    ),
    (
        "ip_address_slash_32_other_ip",
        {"IpAddress": {"ec2-instance-connect:privateIpAddress": "10.0.1.4/32"}},
        {"ec2-instance-connect:privateIpAddress": "10.0.1.5"},
        False,
    ),
    (
        "ip_address_ipv6",
        {"IpAddress": {"aws:SourceIp": "2001:db8::/32"}},
        {"aws:SourceIp": "2001:db8::1"},
        True,
    ),
    (
        "ip_address_garbage_is_false",
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "not-an-ip"},
        False,
    ),
    (
        "not_ip_address",
        {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
        {"aws:SourceIp": "127.0.0.1"},
        True,
    ),
    (
        "not_ip_address_missing_key_is_true",
        {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
        {},
        True,
    ),
    # ARNs
    (
        "arn_like_per_segment",
        {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/eice/*"}},
        {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/eice/alice"},
        True,
    ),
    (
        "arn_equals",
        {"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/eice/alice"}},
        {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/eice/bob"},
        False,
    ),
    (
        "arn_not_like",
        {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/admin*"}},
        {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/eice/alice"},
        True,
    ),
    (
        "arn_not_equals",
        {"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::1:user/x"}},
        {"aws:PrincipalArn": "arn:aws:iam::1:user/x"},
        False,
    ),
    (
        "arn_like_non_arn_is_false",
        {"ArnLike": {"aws:PrincipalArn": "arn:*"}},
        {"aws:PrincipalArn": "alice"},
        False,
    ),
    # IfExists and Null
    ("if_exists_missing_key_is_true", {"StringEqualsIfExists": {"ec2:osuser": "root"}}, {}, True),
    (
        "if_exists_present_key_is_checked",
        {"StringEqualsIfExists": {"ec2:osuser": "root"}},
        {"ec2:osuser": "ec2-user"},
        False,
    ),
    (
        "numeric_if_exists_missing_key",
        {"NumericLessThanEqualsIfExists": {"ec2-instance-connect:maxTunnelDuration": "60"}},
        {},
        True,
    ),
    ("null_true_when_absent", {"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
    (
        "null_true_when_present",
        {"Null": {"aws:TokenIssueTime": "true"}},
        {"aws:TokenIssueTime": "x"},
        False,
    ),
    (
        "null_false_when_present",
        {"Null": {"aws:TokenIssueTime": "false"}},
        {"aws:TokenIssueTime": "x"},
        True,
    ),
    ("null_false_when_absent", {"Null": {"aws:TokenIssueTime": "false"}}, {}, False),
    # set operators
    (
        "for_any_value_one_matches",
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env", "team"]}},
        {"aws:TagKeys": ["team", "cost"]},
        True,
    ),
    (
        "for_any_value_none_matches",
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": ["team", "cost"]},
        False,
    ),
    (
        "for_any_value_missing_key_is_false",
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}},
        {},
        False,
    ),
    (
        "for_all_values_all_match",
        {"ForAllValues:StringLike": {"aws:TagKeys": ["env", "team*"]}},
        {"aws:TagKeys": ["env", "team-a"]},
        True,
    ),
    (
        "for_all_values_one_outside",
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": ["env", "cost"]},
        False,
    ),
    (
        "for_all_values_missing_key_is_true",
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}},
        {},
        True,
    ),
    (
        "for_all_values_empty_set_is_true",
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": []},
        True,
    ),
    # combining
    (
        "keys_in_one_operator_are_and",
        {"StringEquals": {"a": "1", "b": "2"}},
        {"a": "1", "b": "3"},
        False,
    ),
    (
        "operators_are_and",
        {"StringEquals": {"a": "1"}, "NumericLessThan": {"b": "5"}},
        {"a": "1", "b": "4"},
        True,
    ),
    (
        "operators_are_and_one_false",
        {"StringEquals": {"a": "1"}, "NumericLessThan": {"b": "5"}},
        {"a": "1", "b": "6"},
        False,
    ),
    ("unknown_operator_fails_closed", {"StringSortaEquals": {"a": "1"}}, {"a": "1"}, False),
]


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [row[1:] for row in CONDITION_ROWS],
    ids=[row[0] for row in CONDITION_ROWS],
)
def test_condition_operator(condition: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    assert decide(allow(condition), context) is expected
