"""A real AWS sandbox over HTTP, and a builder for one small, healthy site per test."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from access.aws.calls import AwsClients
from access.preflight import PreflightReport, run_preflight
from sandbox.aws.account import bot_client
from sandbox.aws.seed import Estate, seed_estate
from sandbox.aws.server import AwsSandbox

REGION = "us-east-1"
VPC_CIDR = "10.50.0.0/16"
ENDPOINT_SUBNET_CIDR = "10.50.1.0/24"
INSTANCE_SUBNET_CIDR = "10.50.2.0/24"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as running:
        yield running


@pytest.fixture(autouse=True)
def _sandbox_env(sandbox: AwsSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the standard AWS environment at the sandbox; never a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "EICE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def estate(sandbox: AwsSandbox) -> Estate:
    return seed_estate(sandbox)


def bot(sandbox: AwsSandbox, service: str) -> Any:
    return bot_client(service, sandbox.url, REGION)


@pytest.fixture
def ec2(sandbox: AwsSandbox) -> Any:
    return bot(sandbox, "ec2")


@pytest.fixture
def iam(sandbox: AwsSandbox) -> Any:
    return bot(sandbox, "iam")


@pytest.fixture(scope="session")
def clients(sandbox: AwsSandbox) -> AwsClients:
    """One set of clients for the session (creating boto3 clients is the slow part)."""
    shared = AwsClients()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in sandbox.env().items():
            patch.setenv(name, value)
        shared.ec2(REGION)
        shared.iam()
    return shared


@functools.cache
def _amazon_linux_2(url: str) -> str:
    ec2 = bot_client("ec2", url, REGION)
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*x86_64-gp2"]}]
    )["Images"]
    return str(images[0]["ImageId"])


def amazon_linux_2(ec2: Any) -> str:
    """An Amazon Linux 2 image (moto knows over a thousand; looking one up is slow)."""
    return _amazon_linux_2(ec2.meta.endpoint_url)


@dataclass
class Site:
    """A VPC with the endpoint in one subnet and the instance in another, reachable on `port`."""

    ec2: Any
    vpc_id: str
    endpoint_subnet_id: str
    instance_subnet_id: str
    endpoint_sg: str
    instance_sg: str
    endpoint_id: str | None
    instance_id: str
    private_ip: str
    port: int

    @property
    def acl_id(self) -> str:
        acls = self.ec2.describe_network_acls(
            Filters=[{"Name": "association.subnet-id", "Values": [self.instance_subnet_id]}]
        )["NetworkAcls"]
        return str(acls[0]["NetworkAclId"])

    def revoke_endpoint_egress(self) -> None:
        group = self.ec2.describe_security_groups(GroupIds=[self.endpoint_sg])["SecurityGroups"][0]
        self.ec2.revoke_security_group_egress(
            GroupId=self.endpoint_sg, IpPermissions=group["IpPermissionsEgress"]
        )

    def revoke_instance_ingress(self) -> None:
        group = self.ec2.describe_security_groups(GroupIds=[self.instance_sg])["SecurityGroups"][0]
        self.ec2.revoke_security_group_ingress(GroupId=self.instance_sg, IpPermissions=group["IpPermissions"])


def build_site(
    ec2: Any,
    *,
    port: int = 22,
    preserve_client_ip: bool = False,
    instance_type: str = "t3.micro",
    image_id: str | None = None,
    with_endpoint: bool = True,
    client_cidr: str | None = None,
) -> Site:
    """Build a healthy site; a test then breaks exactly one thing."""
    vpc_id = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
    endpoint_subnet, instance_subnet = (
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for cidr, zone in ((ENDPOINT_SUBNET_CIDR, "a"), (INSTANCE_SUBNET_CIDR, "b"))
    )
    endpoint_sg = ec2.create_security_group(GroupName="eice", Description="eice", VpcId=vpc_id)["GroupId"]
    instance_sg = ec2.create_security_group(GroupName="inst", Description="inst", VpcId=vpc_id)["GroupId"]
    default_egress = ec2.describe_security_groups(GroupIds=[endpoint_sg])["SecurityGroups"][0]
    ec2.revoke_security_group_egress(GroupId=endpoint_sg, IpPermissions=default_egress["IpPermissionsEgress"])
    rule = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    ec2.authorize_security_group_egress(
        GroupId=endpoint_sg, IpPermissions=[{**rule, "IpRanges": [{"CidrIp": VPC_CIDR}]}]
    )
    source: dict[str, Any] = (
        {"IpRanges": [{"CidrIp": client_cidr}]}
        if client_cidr
        else {"UserIdGroupPairs": [{"GroupId": endpoint_sg}]}
    )
    ec2.authorize_security_group_ingress(GroupId=instance_sg, IpPermissions=[{**rule, **source}])
    endpoint_id = None
    if with_endpoint:
        endpoint_id = ec2.create_instance_connect_endpoint(
            SubnetId=endpoint_subnet,
            SecurityGroupIds=[endpoint_sg],
            PreserveClientIp=preserve_client_ip,
        )["InstanceConnectEndpoint"]["InstanceConnectEndpointId"]
    instance = ec2.run_instances(
        ImageId=image_id or amazon_linux_2(ec2),
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        SubnetId=instance_subnet,
        SecurityGroupIds=[instance_sg],
    )["Instances"][0]
    return Site(
        ec2=ec2,
        vpc_id=vpc_id,
        endpoint_subnet_id=endpoint_subnet,
        instance_subnet_id=instance_subnet,
        endpoint_sg=endpoint_sg,
        instance_sg=instance_sg,
        endpoint_id=endpoint_id,
        instance_id=instance["InstanceId"],
        private_ip=instance["PrivateIpAddress"],
        port=port,
    )


def not_ok(report: PreflightReport) -> dict[str, str]:
    """{check name: status} of every check that did not pass."""
    return {c.name: c.status for c in report.checks if c.status != "ok"}


@pytest.fixture(scope="session")
def role_arn(sandbox: AwsSandbox) -> str:
    """A role with no inline policies: plenty of room for a grant."""
    client = bot(sandbox, "iam")
    try:
        role = client.create_role(RoleName="preflight-requester", AssumeRolePolicyDocument="{}")
    except client.exceptions.EntityAlreadyExistsException:
        role = client.get_role(RoleName="preflight-requester")
    return str(role["Role"]["Arn"])


@pytest.fixture
def preflight(clients: AwsClients, role_arn: str) -> Any:
    """run_preflight on a site, as the requester role unless told otherwise."""

    def run(site: Site, **kwargs: Any) -> PreflightReport:
        kwargs.setdefault("port", site.port)
        kwargs.setdefault("principal_arn", role_arn)
        return run_preflight(clients, [REGION], site.instance_id, **kwargs)

    return run


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
