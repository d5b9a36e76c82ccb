"""One command asks AWS each read-only question once; the next command asks again."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from access.aws.calls import AwsClients
from access.aws.ec2 import find_instance, list_endpoints
from access.aws.iam import IamPolicies
from access.aws.lookups import one_lookup_each
from access.errors import NotFound
from sandbox.aws.account import bot_session
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox

REGIONS = ["us-east-1"]


@pytest.fixture
def counted(aws: AwsSandbox, estate: Estate) -> tuple[AwsClients, Counter[str]]:
    """Fresh clients whose every API call (as sent to the sandbox) is counted by name."""
    session = bot_session()
    clients = AwsClients(session)
    calls: Counter[str] = Counter()

    def count(model: Any = None, **_: Any) -> None:
        calls[model.name] += 1

    clients.ec2("us-east-1").meta.events.register("before-call", count)
    clients.iam().meta.events.register("before-call", count)
    return clients, calls


def test_inside_one_command_the_instance_endpoints_and_principal_are_looked_up_once(
    counted: tuple[AwsClients, Counter[str]], estate: Estate
) -> None:
    clients, calls = counted
    web = estate.instance("web-1")
    role = next(iter(estate.role_arns.values()))
    iam = IamPolicies(clients)

    with one_lookup_each():
        by_name = find_instance(clients, REGIONS, "web-1")
        by_id = find_instance(clients, REGIONS, web.instance_id)  # known by ID once found by Name
        first = list_endpoints(clients, by_name.region, by_name.vpc_id)
        again = list_endpoints(clients, by_name.region, by_name.vpc_id)
        assert iam.exists(role) and iam.exists(role)

    assert by_name == by_id and by_id.instance_id == web.instance_id
    assert first == again and first is not again  # callers get their own list
    assert calls == Counter({"DescribeInstances": 1, "DescribeInstanceConnectEndpoints": 1, "GetRole": 1})


def test_outside_a_command_and_in_the_next_one_aws_is_asked_again(
    counted: tuple[AwsClients, Counter[str]],
) -> None:
    clients, calls = counted
    find_instance(clients, REGIONS, "web-1")
    find_instance(clients, REGIONS, "web-1")
    with one_lookup_each():
        find_instance(clients, REGIONS, "web-1")
    with one_lookup_each():
        find_instance(clients, REGIONS, "web-1")

    assert calls["DescribeInstances"] == 4


def test_a_failed_lookup_is_not_kept(counted: tuple[AwsClients, Counter[str]]) -> None:
    clients, calls = counted
    with one_lookup_each():
        for _ in range(2):
            with pytest.raises(NotFound):
                find_instance(clients, REGIONS, "no-such-instance")

    assert calls["DescribeInstances"] == 2
