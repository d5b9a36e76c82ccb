"""Which installation wrote a grant policy: the owner Sid of its first statement."""

from __future__ import annotations

from typing import Any

import pytest

from access.grants.policy import policy_owner

ALLOW = {"Effect": "Allow", "Action": "ec2-instance-connect:OpenTunnel", "Resource": "*"}


@pytest.mark.parametrize(
    ("document", "owner"),
    [
        ({"Statement": [{"Sid": "EiceGrantOfab12", **ALLOW}, ALLOW]}, "ab12"),
        ({"Statement": {"Sid": "EiceGrantOfab12", **ALLOW}}, "ab12"),  # a lone statement object
        ({"Statement": [ALLOW, {"Sid": "EiceGrantOfab12", **ALLOW}]}, None),  # only the first counts
        ({"Statement": [{"Sid": "EiceGrantOf", **ALLOW}]}, None),  # no ID after the prefix
        ({"Statement": [{"Sid": "SomethingElse", **ALLOW}]}, None),
        ({"Statement": [{"Sid": 7, **ALLOW}]}, None),
        ({"Statement": [ALLOW]}, None),
        ({"Statement": []}, None),
        ({"Statement": "nonsense"}, None),
        ({}, None),
    ],
)
def test_policy_owner(document: dict[str, Any], owner: str | None) -> None:
    assert policy_owner(document) == owner
