"""A small estate (VPCs, endpoints, instances, people) built with plain boto3 over HTTP."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.aws.account import bot_session
from sandbox.aws.server import AwsSandbox

PEOPLE = ("alice", "bob", "carol")
ROLE_PATH = "/eice/"
# (name, env, vpc, subnet index)
INSTANCES = (
    ("web-1", "prod", "prod", 0),
    ("db-1", "prod", "prod", 1),
    ("dev-box", "dev", "dev", 0),
    ("worker", "prod", "prod", 1),
    ("worker", "dev", "dev", 1),
)
VPCS = {"prod": ("10.0.0.0/16", "prod-vpc"), "dev": ("10.1.0.0/16", "dev-vpc")}


@dataclass(frozen=True)
class SeedInstance:
    name: str
    env: str
    instance_id: str
    arn: str
    private_ip: str
    vpc_id: str
    subnet_id: str
    security_group_id: str


@dataclass(frozen=True)
class SeedEndpoint:
    endpoint_id: str
    arn: str
    dns_name: str
    vpc_id: str
    subnet_id: str
    security_group_id: str


@dataclass
class Estate:
    """What seed_estate built; keys of the dicts are "prod" / "dev" or person names."""

    account_id: str
    region: str
    vpc_ids: dict[str, str] = field(default_factory=dict)
    subnet_ids: dict[str, list[str]] = field(default_factory=dict)
    endpoint_sg_ids: dict[str, str] = field(default_factory=dict)
    instance_sg_ids: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, SeedEndpoint] = field(default_factory=dict)
    instances: list[SeedInstance] = field(default_factory=list)
    role_arns: dict[str, str] = field(default_factory=dict)
    user_name: str = "dave"
    user_arn: str = ""
    user_access_key_id: str = ""
    user_secret_access_key: str = ""

    def instance(self, name: str) -> SeedInstance:
        """The one instance with that Name tag (ValueError if none or several)."""
        found = [i for i in self.instances if i.name == name]
        if len(found) != 1:
            raise ValueError(f"{len(found)} instances are named {name!r}")
        return found[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _trust_policy(account_id: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def _tags(resource_type: str, **tags: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def _network(ec2: Any, estate: Estate, key: str) -> None:
    cidr, name = VPCS[key]
    vpc_id = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=_tags("vpc", Name=name))["Vpc"]["VpcId"]
    base = cidr.split(".")[:2]
    zones = ("a", "b")
    subnets = [
        ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=f"{base[0]}.{base[1]}.{i + 1}.0/24",
            AvailabilityZone=f"{estate.region}{zones[i]}",
            TagSpecifications=_tags("subnet", Name=f"{key}-private-{zones[i]}"),
        )["Subnet"]["SubnetId"]
        for i in range(2)
    ]
    endpoint_sg = ec2.create_security_group(
        GroupName=f"{key}-eice", Description="EC2 Instance Connect Endpoint", VpcId=vpc_id
    )["GroupId"]
    instance_sg = ec2.create_security_group(
        GroupName=f"{key}-instances", Description="instances reachable over EICE", VpcId=vpc_id
    )["GroupId"]
    ec2.authorize_security_group_egress(
        GroupId=endpoint_sg,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": cidr}]}],
    )
    ec2.authorize_security_group_ingress(
        GroupId=instance_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "UserIdGroupPairs": [{"GroupId": endpoint_sg}],
            }
        ],
    )
    endpoint = ec2.create_instance_connect_endpoint(
        SubnetId=subnets[0],
        SecurityGroupIds=[endpoint_sg],
        TagSpecifications=_tags("instance-connect-endpoint", Name=f"{key}-eice", env=key),
    )["InstanceConnectEndpoint"]
    estate.vpc_ids[key] = vpc_id
    estate.subnet_ids[key] = subnets
    estate.endpoint_sg_ids[key] = endpoint_sg
    estate.instance_sg_ids[key] = instance_sg
    estate.endpoints[key] = SeedEndpoint(
        endpoint_id=endpoint["InstanceConnectEndpointId"],
        arn=endpoint["InstanceConnectEndpointArn"],
        dns_name=endpoint["DnsName"],
        vpc_id=vpc_id,
        subnet_id=subnets[0],
        security_group_id=endpoint_sg,
    )


def _instances(ec2: Any, estate: Estate) -> None:
    # Filtering keeps the answer small: moto knows over a thousand Amazon images.
    images = (
        ec2.describe_images(
            Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*x86_64-gp2"]}]
        )["Images"]
        or ec2.describe_images(Owners=["amazon"])["Images"]
    )
    image_id = images[0]["ImageId"]
    for name, env, vpc_key, subnet_index in INSTANCES:
        instance = ec2.run_instances(
            ImageId=image_id,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            SubnetId=estate.subnet_ids[vpc_key][subnet_index],
            SecurityGroupIds=[estate.instance_sg_ids[vpc_key]],
            TagSpecifications=_tags("instance", Name=name, env=env),
        )["Instances"][0]
        instance_id = instance["InstanceId"]
        estate.instances.append(
            SeedInstance(
                name=name,
                env=env,
                instance_id=instance_id,
                arn=f"arn:aws:ec2:{estate.region}:{estate.account_id}:instance/{instance_id}",
                private_ip=instance["PrivateIpAddress"],
                vpc_id=estate.vpc_ids[vpc_key],
                subnet_id=instance["SubnetId"],
                security_group_id=estate.instance_sg_ids[vpc_key],
            )
        )


def _people(iam: Any, estate: Estate) -> None:
    # moto's IAM is process-wide: tolerate people left by an earlier seed in this process.
    for person in PEOPLE:
        try:
            role = iam.create_role(
                RoleName=person,
                Path=ROLE_PATH,
                AssumeRolePolicyDocument=_trust_policy(estate.account_id),
                Tags=[{"Key": "eice:person", "Value": person}],
            )["Role"]
        except iam.exceptions.EntityAlreadyExistsException:
            role = iam.get_role(RoleName=person)["Role"]
        estate.role_arns[person] = role["Arn"]
    try:
        estate.user_arn = iam.create_user(UserName=estate.user_name)["User"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        estate.user_arn = iam.get_user(UserName=estate.user_name)["User"]["Arn"]
        for old in iam.list_access_keys(UserName=estate.user_name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=estate.user_name, AccessKeyId=old["AccessKeyId"])
    key = iam.create_access_key(UserName=estate.user_name)["AccessKey"]
    estate.user_access_key_id = key["AccessKeyId"]
    estate.user_secret_access_key = key["SecretAccessKey"]


def seed_estate(sandbox_or_url: AwsSandbox | str, *, region: str = "us-east-1") -> Estate:
    """Build the demo estate: new VPCs, endpoints and instances; people reused if present.

    Args:
        sandbox_or_url: a started AwsSandbox, or the URL of one in another process.
        region: where the VPCs, endpoints and instances go.
    """
    url = sandbox_or_url.url if isinstance(sandbox_or_url, AwsSandbox) else sandbox_or_url
    session = bot_session(region)
    ec2 = session.client("ec2", endpoint_url=url)
    iam = session.client("iam", endpoint_url=url)
    account_id = session.client("sts", endpoint_url=url).get_caller_identity()["Account"]
    estate = Estate(account_id=account_id, region=region)
    for key in VPCS:
        _network(ec2, estate, key)
    _instances(ec2, estate)
    _people(iam, estate)
    return estate
