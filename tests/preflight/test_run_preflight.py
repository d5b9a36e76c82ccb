"""run_preflight against the sandbox: a healthy site passes; each broken thing fails alone."""

from __future__ import annotations

import json
import time
from typing import Any

from access.aws.calls import AwsClients
from access.preflight import PreflightReport, run_preflight
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from tests.preflight.conftest import ENDPOINT_SUBNET_CIDR, REGION, build_site, not_ok


def test_seeded_instances_pass_every_check(clients: AwsClients, estate: Estate) -> None:
    for name in ("web-1", "db-1"):  # same subnet as the endpoint, and the other subnet
        report = run_preflight(
            clients,
            [REGION],
            estate.instance(name).instance_id,
            principal_arn=estate.role_arns["alice"],
        )
        assert not_ok(report) == {}, report.checks
        assert report.verdict == "reachable"
        assert report.endpoint_id == estate.endpoints["prod"].endpoint_id


def test_name_tag_is_resolved(clients: AwsClients, estate: Estate) -> None:
    report = run_preflight(clients, [REGION], "dev-box", principal_arn=estate.role_arns["bob"])
    assert report.instance_id == estate.instance("dev-box").instance_id
    assert report.verdict == "reachable"


def _calls(sandbox: AwsSandbox) -> dict[str, int]:
    return {k: v for k, v in sandbox.faults.counts.items() if v}


def test_a_handful_of_aws_calls(sandbox: AwsSandbox, estate: Estate) -> None:
    instance_id = estate.instance("db-1").instance_id
    clients = AwsClients()
    run_preflight(clients, [REGION], instance_id)  # warm the clients up
    sandbox.faults.reset_counters()
    started = time.monotonic()
    run_preflight(clients, [REGION], instance_id)
    without_iam = _calls(sandbox)
    sandbox.faults.reset_counters()
    run_preflight(clients, [REGION], instance_id, principal_arn=estate.role_arns["alice"])
    with_iam = _calls(sandbox)
    elapsed = time.monotonic() - started
    assert sum(without_iam.values()) <= 8, without_iam
    assert all(n == 1 for n in without_iam.values()), without_iam
    assert sum(with_iam.values()) <= 11, with_iam
    assert elapsed < 5


def test_built_site_is_healthy(ec2: Any, preflight: Any) -> None:
    report = preflight(build_site(ec2))
    assert not_ok(report) == {}, report.checks


def test_endpoint_sg_without_egress_fails_alone(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2)
    site.revoke_endpoint_egress()
    report = preflight(site)
    assert not_ok(report) == {"endpoint-sg-egress": "failure"}
    fix = report.check("endpoint-sg-egress").fix or ""
    assert fix.startswith(f"aws ec2 authorize-security-group-egress --group-id {site.endpoint_sg} ")
    assert "FromPort=22,ToPort=22" in fix and site.instance_sg in fix
    assert report.verdict.startswith(f"will fail: endpoint SG {site.endpoint_sg} has no outbound 22")


def test_instance_sg_without_ingress_fails_alone(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2)
    site.revoke_instance_ingress()
    report = preflight(site)
    assert not_ok(report) == {"instance-sg-ingress": "failure"}
    assert report.verdict == (
        f"will fail: instance SG {site.instance_sg} has no inbound 22 from the endpoint"
    )
    assert report.check("instance-sg-ingress").fix == (
        f"aws ec2 authorize-security-group-ingress --group-id {site.instance_sg} --protocol tcp "
        f"--port 22 --source-group {site.endpoint_sg} --region {REGION}"
    )


def test_instance_sg_open_to_vpc_cidr_passes(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2)
    site.revoke_instance_ingress()
    ec2.authorize_security_group_ingress(
        GroupId=site.instance_sg, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="10.50.0.0/16"
    )
    assert not_ok(preflight(site)) == {}


def test_stopped_instance_fails_with_start_command(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2)
    ec2.stop_instances(InstanceIds=[site.instance_id])
    report = preflight(site)
    assert not_ok(report) == {"instance": "failure"}
    assert report.check("instance").fix == (
        f"aws ec2 start-instances --instance-ids {site.instance_id} --region {REGION}"
    )


def test_unknown_instance_is_one_failure(clients: AwsClients) -> None:
    report = run_preflight(clients, [REGION], "i-0123456789abcdef0")
    assert [(c.name, c.status) for c in report.checks] == [("instance", "failure")]
    assert report.verdict.startswith("will fail: no instance i-0123456789abcdef0")


def test_no_endpoint_fails_with_create_command(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2, with_endpoint=False)
    report = preflight(site)
    assert not_ok(report) == {"endpoint": "failure"}
    assert (report.check("endpoint").fix or "").startswith(
        f"aws ec2 create-instance-connect-endpoint --subnet-id {site.instance_subnet_id} "
    )


def test_endpoint_in_create_failed_state_fails(ec2: Any, preflight: Any, sandbox: AwsSandbox) -> None:
    site = build_site(ec2)
    assert site.endpoint_id
    sandbox.endpoints.set_state(site.endpoint_id, "create-failed", "subnet has no free address")
    report = preflight(site)
    assert not_ok(report) == {"endpoint": "failure"}
    check = report.check("endpoint")
    assert check.evidence == f"{site.endpoint_id} is create-failed (subnet has no free address)"
    assert f"delete-instance-connect-endpoint --instance-connect-endpoint-id {site.endpoint_id}" in (
        check.fix or ""
    )


def test_nacl_deny_on_the_instance_subnet_fails_alone(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2)
    ec2.create_network_acl_entry(
        NetworkAclId=site.acl_id,
        RuleNumber=50,
        Protocol="6",
        RuleAction="deny",
        Egress=False,
        CidrBlock="10.50.0.0/16",
        PortRange={"From": 22, "To": 22},
    )
    report = preflight(site)
    assert not_ok(report) == {"instance-subnet-nacl": "failure"}
    check = report.check("instance-subnet-nacl")
    assert "rule 50 (deny)" in check.evidence
    assert check.fix == (
        f"aws ec2 create-network-acl-entry --network-acl-id {site.acl_id} --ingress "
        f"--rule-number 49 --protocol tcp --port-range From=22,To=22 "
        f"--cidr-block {ENDPOINT_SUBNET_CIDR} --rule-action allow --region {REGION}"
    )


def test_nacl_blocking_replies_to_the_endpoint_fails(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2)
    ec2.create_network_acl_entry(
        NetworkAclId=site.acl_id,
        RuleNumber=60,
        Protocol="6",
        RuleAction="deny",
        Egress=False,
        CidrBlock=f"{site.private_ip}/32",
        PortRange={"From": 32768, "To": 60999},
    )
    report = preflight(site)
    assert not_ok(report) == {"endpoint-subnet-nacl": "failure"}
    assert "(replies)" in report.check("endpoint-subnet-nacl").evidence


def test_preservation_on_a_t1_instance_fails_alone(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2, preserve_client_ip=True, instance_type="t1.micro", client_cidr="203.0.113.0/24")
    report = preflight(site)
    assert not_ok(report) == {"client-ip-preservation": "failure"}
    check = report.check("client-ip-preservation")
    assert "t1.micro" in check.evidence
    assert f"--instance-connect-endpoint-id {site.endpoint_id}" in (check.fix or "")
    assert "--no-preserve-client-ip" in (check.fix or "")


def test_preservation_needs_client_addresses_in_the_instance_sg(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2, preserve_client_ip=True)
    report = preflight(site)
    assert not_ok(report) == {"instance-sg-ingress": "failure"}
    assert "--cidr <client-cidr>" in (report.check("instance-sg-ingress").fix or "")


def test_preservation_with_a_transit_gateway_warns(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2, preserve_client_ip=True, client_cidr="0.0.0.0/0")
    tgw = ec2.create_transit_gateway()["TransitGateway"]["TransitGatewayId"]
    ec2.create_transit_gateway_vpc_attachment(
        TransitGatewayId=tgw, VpcId=site.vpc_id, SubnetIds=[site.instance_subnet_id]
    )
    report = preflight(site)
    assert not_ok(report) == {"transit-gateway": "warning"}
    assert tgw in report.check("transit-gateway").evidence
    assert report.verdict == "warnings"


def test_wrong_os_user_for_the_ami_warns_with_the_right_one(ec2: Any, preflight: Any) -> None:
    report = preflight(build_site(ec2), os_user="ubuntu")
    assert not_ok(report) == {"os-user": "warning"}
    assert report.check("os-user").fix == "request with --user ec2-user"


def test_ubuntu_ami_suggests_ubuntu(ec2: Any, preflight: Any) -> None:
    image = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["*ubuntu-xenial-16.04*"]}]
    )["Images"][0]["ImageId"]
    report = preflight(build_site(ec2, image_id=image))
    assert not_ok(report) == {"os-user": "warning", "instance-connect": "warning"}
    assert report.check("os-user").fix == "request with --user ubuntu"
    assert "own key pair" in report.check("instance-connect").evidence


def test_unknown_ami_warns_about_user_and_instance_connect(ec2: Any, preflight: Any) -> None:
    donor = build_site(ec2)
    image = ec2.create_image(InstanceId=donor.instance_id, Name="acme-appliance-7", Description="")
    report = preflight(build_site(ec2, image_id=image["ImageId"]))
    assert not_ok(report) == {"os-user": "warning", "instance-connect": "warning"}
    assert "cannot tell the login user" in report.check("os-user").evidence


def test_missing_principal_fails(ec2: Any, preflight: Any) -> None:
    arn = "arn:aws:iam::123456789012:role/eice/nobody-here"
    report = preflight(build_site(ec2), principal_arn=arn)
    assert not_ok(report) == {"principal": "failure"}
    assert arn in report.check("principal").evidence


def test_no_principal_given_warns(ec2: Any, preflight: Any) -> None:
    report = preflight(build_site(ec2), principal_arn=None)
    assert not_ok(report) == {"principal": "warning"}


def test_exhausted_inline_budget_fails(ec2: Any, iam: Any, preflight: Any, unique: str) -> None:
    name = f"full-{unique}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    for i in range(3):
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{'x' * 2900}{i}",
                }
            ],
        }
        iam.put_role_policy(RoleName=name, PolicyName=f"big-{i}", PolicyDocument=json.dumps(document))
    report = preflight(build_site(ec2), principal_arn=arn)
    assert not_ok(report) == {"policy-budget": "failure"}
    assert f"aws iam list-role-policies --role-name {name}" in (report.check("policy-budget").fix or "")


def test_port_8080_is_unverified(ec2: Any, preflight: Any) -> None:
    report = preflight(build_site(ec2, port=8080))
    assert not_ok(report) == {"port": "warning"}
    assert "unverified" in report.check("port").evidence


def test_report_round_trips_through_json(ec2: Any, preflight: Any) -> None:
    site = build_site(ec2)
    site.revoke_instance_ingress()
    report = preflight(site)
    again = PreflightReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert again.to_dict() == report.to_dict()
