"""Every bad request is a clear error that writes no row and makes no IAM change."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from access.access_requests.models import AccessRequest
from access.access_requests.prepare import RequestInput
from access.audit.models import AuditEvent
from access.config.permissions import Actor
from access.errors import AccessError, Ambiguous, AwsError, InvalidInput, NotFound, PolicyTooLarge
from access.grants.models import Grant
from access.runtime import Runtime
from access.workflows import approve_request, submit_request
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox

CASES = [
    ("i-0000000000000dead", "30m", "U0ALICE", NotFound, "no instance i-0000000000000dead"),
    ("i-xyz", "30m", "U0ALICE", InvalidInput, "not an instance ID"),
    ("no-such-box", "30m", "U0ALICE", NotFound, "no instance named 'no-such-box'"),
    ("worker", "30m", "U0ALICE", Ambiguous, "2 instances are named 'worker'"),
    ("web-1", "0m", "U0ALICE", InvalidInput, "zero"),
    ("web-1", "-5m", "U0ALICE", InvalidInput, "negative"),
    ("web-1", "5h", "U0ALICE", InvalidInput, "longer than the 4h allowed"),
    ("web-1", "soon", "U0ALICE", InvalidInput, "cannot read duration"),
    ("web-1", "30m", "U0NOBODY", NotFound, "no IAM principal"),
    ("web-1", "30m", "U0GHOST", NotFound, "does not exist"),
    ("web-1", "2h", "U0DAVE", PolicyTooLarge, "IAM allows 2,048"),
    ("'; DROP TABLE grants; --", "30m", "U0ALICE", InvalidInput, "neither an instance ID"),
]


@pytest.mark.parametrize(("ref", "duration", "who", "error", "message"), CASES)
def test_bad_request_is_refused_and_changes_nothing(
    rt: Runtime,
    aws: AwsSandbox,
    ref: str,
    duration: str,
    who: str,
    error: type[AccessError],
    message: str,
) -> None:
    puts = aws.faults.counts["iam:PutRolePolicy"]
    with pytest.raises(error) as caught:
        submit_request(rt, RequestInput(Actor(who), ref, duration))
    assert message in caught.value.message
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AccessRequest)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    assert aws.faults.counts["iam:PutRolePolicy"] == puts


def test_instance_in_a_vpc_without_endpoint_is_refused(rt: Runtime, aws: AwsSandbox) -> None:
    ec2 = rt.clients.ec2("us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, InstanceType="t3.micro"
    )
    instance_id = instance["Instances"][0]["InstanceId"]
    with pytest.raises(NotFound, match="no EC2 Instance Connect Endpoint in"):
        submit_request(rt, RequestInput(Actor("U0ALICE"), instance_id, "30m"))
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AccessRequest)) == 0


def test_bad_port_and_user_are_refused(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match="port 70000"):
        submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "30m", port=70000))
    with pytest.raises(InvalidInput, match="not a valid OS user"):
        submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "30m", os_user="root; rm -rf /"))


def test_iam_failing_past_the_retries_is_a_clear_error_and_changes_nothing(
    rt: Runtime, aws: AwsSandbox
) -> None:
    aws.faults.update({"iam_throttle_rate": 1.0})
    try:
        with pytest.raises(AwsError) as caught:
            submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "30m"))
    finally:
        aws.faults.update({"iam_throttle_rate": 0.0})
    assert "Throttling" in caught.value.message
    assert "nothing was changed" in caught.value.message
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AccessRequest)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_a_grant_that_would_not_fit_beside_the_roles_other_policies_is_refused_before_approval(
    rt: Runtime, aws: AwsSandbox, estate: Estate
) -> None:
    """IAM counts every inline policy of a role against one 10,240-character quota."""
    alice = estate.role_arns["alice"]
    filler = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "s3:GetObject",
                "Resource": [f"arn:aws:s3:::b-{i:04d}/*" for i in range(280)],
            }
        ],
    }
    rt.iam.put(alice, "team-s3-denies", filler)
    try:
        used = rt.iam.inline_size_used(alice)
        assert used > 6_000  # with a 1-hour grant (about 5,000) it is over
        puts = aws.faults.counts["iam:PutRolePolicy"]
        with pytest.raises(PolicyTooLarge) as caught:
            submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "1h"))
        assert f"the role already has {used:,}" in caught.value.message
        assert "IAM allows 10,240" in caught.value.message
        with rt.db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(AccessRequest)) == 0
        assert aws.faults.counts["iam:PutRolePolicy"] == puts
    finally:
        rt.iam.delete(alice, "team-s3-denies")
    # With the room back, the same request goes to the approvers; the role's policies were
    # read once for the size check and the pre-flight together.
    lists = aws.faults.counts["iam:ListRolePolicies"]
    assert submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "1h")).request.status == "pending"
    assert aws.faults.counts["iam:ListRolePolicies"] - lists == 1


def test_requests_pending_together_are_checked_against_the_quota_again_at_approval(
    rt: Runtime, aws: AwsSandbox, estate: Estate
) -> None:
    """Each of three 1-hour requests fits the empty role when asked for; two grants fill it."""
    worker = next(i for i in estate.instances if i.name == "worker" and i.env == "prod")
    asked = [
        submit_request(rt, RequestInput(Actor("U0ALICE"), ref, "1h")).request.id
        for ref in ("web-1", worker.instance_id, "db-1")
    ]
    approve_request(rt, asked[0], Actor("U0BOB"))
    approve_request(rt, asked[1], Actor("U0BOB"))
    puts = aws.faults.counts["iam:PutRolePolicy"]
    approve_request(rt, asked[2], Actor("U0BOB"))  # db-1 needs two approvals
    with pytest.raises(PolicyTooLarge) as caught:
        approve_request(rt, asked[2], Actor("U0CAROL"))
    assert "the role already has" in caught.value.message
    assert "IAM allows 10,240" in caught.value.message
    assert aws.faults.counts["iam:PutRolePolicy"] == puts  # refused before IAM was asked
    with rt.db.transaction() as session:
        assert session.get(AccessRequest, asked[2]).status == "pending"  # for an approver to deny
        assert session.scalar(select(func.count()).select_from(Grant)) == 2
