"""CreateInstanceConnectEndpoint / DescribeInstanceConnectEndpoints / Delete through boto3."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from sandbox.aws.server import AwsSandbox


def _network(ec2, octet: int) -> tuple[str, list[str]]:
    vpc = ec2.create_vpc(CidrBlock=f"10.{octet}.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{octet}.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)
    ]
    return vpc, subnets


def _tagged(batch: str, **extra: str) -> list[dict]:
    tags = [{"Key": "batch", "Value": batch}] + [{"Key": k, "Value": v} for k, v in extra.items()]
    return [{"ResourceType": "instance-connect-endpoint", "Tags": tags}]


@pytest.fixture
def ec2(sandbox: AwsSandbox, client_for):
    return client_for(sandbox, "ec2")


def test_created_endpoint_is_described_with_the_real_shape(ec2, unique) -> None:
    vpc, subnets = _network(ec2, 200)
    sg = ec2.create_security_group(GroupName=f"eice-{unique}", Description="e", VpcId=vpc)
    created = ec2.create_instance_connect_endpoint(
        SubnetId=subnets[0],
        SecurityGroupIds=[sg["GroupId"]],
        PreserveClientIp=True,
        TagSpecifications=_tagged(unique, Name="prod-eice"),
    )["InstanceConnectEndpoint"]

    found = ec2.describe_instance_connect_endpoints(
        InstanceConnectEndpointIds=[created["InstanceConnectEndpointId"]]
    )["InstanceConnectEndpoints"]

    assert len(found) == 1
    endpoint = found[0]
    assert re.fullmatch(r"eice-[0-9a-f]{17}", endpoint["InstanceConnectEndpointId"])
    assert endpoint["InstanceConnectEndpointArn"] == (
        f"arn:aws:ec2:us-east-1:123456789012:instance-connect-endpoint/"
        f"{endpoint['InstanceConnectEndpointId']}"
    )
    assert endpoint["State"] == "create-complete"
    assert endpoint["VpcId"] == vpc
    assert endpoint["SubnetId"] == subnets[0]
    assert endpoint["SecurityGroupIds"] == [sg["GroupId"]]
    assert endpoint["PreserveClientIp"] is True
    assert endpoint["DnsName"].startswith(endpoint["InstanceConnectEndpointId"] + ".")
    assert ".fips." in endpoint["FipsDnsName"]
    assert {"Key": "Name", "Value": "prod-eice"} in endpoint["Tags"]
    assert endpoint["NetworkInterfaceIds"][0].startswith("eni-")
    assert endpoint["CreatedAt"].year >= 2024


def test_filters_select_by_vpc_subnet_state_and_tags(sandbox: AwsSandbox, ec2, unique) -> None:
    vpc_a, subnets_a = _network(ec2, 201)
    vpc_b, subnets_b = _network(ec2, 202)
    a = ec2.create_instance_connect_endpoint(
        SubnetId=subnets_a[0], TagSpecifications=_tagged(unique, env="prod")
    )["InstanceConnectEndpoint"]["InstanceConnectEndpointId"]
    b = ec2.create_instance_connect_endpoint(
        SubnetId=subnets_b[1], TagSpecifications=_tagged(unique, env="dev")
    )["InstanceConnectEndpoint"]["InstanceConnectEndpointId"]
    sandbox.endpoints.set_state(b, "create-in-progress")

    def ids(*filters: tuple[str, list[str]]) -> set[str]:
        answer = ec2.describe_instance_connect_endpoints(
            Filters=[{"Name": "tag:batch", "Values": [unique]}]
            + [{"Name": n, "Values": v} for n, v in filters]
        )
        return {e["InstanceConnectEndpointId"] for e in answer["InstanceConnectEndpoints"]}

    assert ids() == {a, b}
    assert ids(("vpc-id", [vpc_a])) == {a}
    assert ids(("subnet-id", [subnets_b[1]])) == {b}
    assert ids(("state", ["create-complete"])) == {a}
    assert ids(("tag:env", ["dev"])) == {b}
    assert ids(("tag-key", ["env"])) == {a, b}
    assert ids(("instance-connect-endpoint-id", [a, b]), ("vpc-id", [vpc_b])) == {b}


def test_pages_follow_next_token(ec2, unique) -> None:
    created = set()
    for octet in (203, 204, 205):
        _, subnets = _network(ec2, octet)
        answer = ec2.create_instance_connect_endpoint(SubnetId=subnets[0], TagSpecifications=_tagged(unique))
        created.add(answer["InstanceConnectEndpoint"]["InstanceConnectEndpointId"])
    only_batch = [{"Name": "tag:batch", "Values": [unique]}]

    first = ec2.describe_instance_connect_endpoints(Filters=only_batch, MaxResults=2)
    second = ec2.describe_instance_connect_endpoints(
        Filters=only_batch, MaxResults=2, NextToken=first["NextToken"]
    )

    assert len(first["InstanceConnectEndpoints"]) == 2
    assert len(second["InstanceConnectEndpoints"]) == 1
    assert "NextToken" not in second
    seen = first["InstanceConnectEndpoints"] + second["InstanceConnectEndpoints"]
    assert {e["InstanceConnectEndpointId"] for e in seen} == created
    paginator = ec2.get_paginator("describe_instance_connect_endpoints")
    pages = list(paginator.paginate(Filters=only_batch, PaginationConfig={"PageSize": 1}))
    assert sum(len(p["InstanceConnectEndpoints"]) for p in pages) == 3


@pytest.mark.parametrize("max_results", [51, 1000])
def test_max_results_above_fifty_is_refused(ec2, max_results: int) -> None:
    with pytest.raises(ClientError) as raised:
        ec2.describe_instance_connect_endpoints(MaxResults=max_results)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_unknown_subnet_is_refused(ec2) -> None:
    with pytest.raises(ClientError) as raised:
        ec2.create_instance_connect_endpoint(SubnetId="subnet-0123456789abcdef0")
    assert raised.value.response["Error"]["Code"] == "InvalidSubnetID.NotFound"


def test_second_endpoint_in_a_vpc_is_refused(ec2) -> None:
    _, subnets = _network(ec2, 206)
    ec2.create_instance_connect_endpoint(SubnetId=subnets[0])
    with pytest.raises(ClientError) as raised:
        ec2.create_instance_connect_endpoint(SubnetId=subnets[1])
    assert raised.value.response["Error"]["Code"] == "ResourceLimitExceeded"


def test_same_client_token_returns_the_same_endpoint(ec2, unique) -> None:
    _, subnets = _network(ec2, 207)
    first = ec2.create_instance_connect_endpoint(SubnetId=subnets[0], ClientToken=unique)
    again = ec2.create_instance_connect_endpoint(SubnetId=subnets[0], ClientToken=unique)
    assert (
        first["InstanceConnectEndpoint"]["InstanceConnectEndpointId"]
        == again["InstanceConnectEndpoint"]["InstanceConnectEndpointId"]
    )
    assert again["ClientToken"] == unique


def test_deleted_endpoint_is_gone(ec2) -> None:
    _, subnets = _network(ec2, 208)
    endpoint_id = ec2.create_instance_connect_endpoint(SubnetId=subnets[0])["InstanceConnectEndpoint"][
        "InstanceConnectEndpointId"
    ]

    deleted = ec2.delete_instance_connect_endpoint(InstanceConnectEndpointId=endpoint_id)

    assert deleted["InstanceConnectEndpoint"]["State"] == "delete-in-progress"
    with pytest.raises(ClientError) as raised:
        ec2.describe_instance_connect_endpoints(InstanceConnectEndpointIds=[endpoint_id])
    assert raised.value.response["Error"]["Code"] == "InvalidInstanceConnectEndpointId.NotFound"
    ec2.create_instance_connect_endpoint(SubnetId=subnets[1])  # the VPC is free again


def test_attached_tunnel_server_becomes_every_dns_name(fresh_sandbox: AwsSandbox, client_for) -> None:
    ec2 = client_for(fresh_sandbox, "ec2")
    _, subnets = _network(ec2, 209)
    ec2.create_instance_connect_endpoint(SubnetId=subnets[0])

    fresh_sandbox.attach_tunnel_server("127.0.0.1", 40123, "ws")
    endpoint = ec2.describe_instance_connect_endpoints()["InstanceConnectEndpoints"][0]

    assert endpoint["DnsName"] == endpoint["FipsDnsName"] == "127.0.0.1:40123"
    fresh_sandbox.attach_tunnel_server("localhost", 443, "wss")
    endpoint = ec2.describe_instance_connect_endpoints()["InstanceConnectEndpoints"][0]
    assert endpoint["DnsName"] == "localhost"
