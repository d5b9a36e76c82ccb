"""IAM through the sandbox: fault injection, refused roles, and CloudTrail records."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from sandbox.aws.server import AwsSandbox

POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
    }
)
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


@pytest.fixture
def iam(fresh_sandbox: AwsSandbox, client_for):
    return client_for(fresh_sandbox, "iam")


@pytest.fixture
def role(iam, unique) -> str:
    name = f"person-{unique}"
    iam.create_role(RoleName=name, Path="/eice/", AssumeRolePolicyDocument=TRUST)
    return name


def test_put_role_policy_is_recorded_with_the_request_id_boto3_saw(fresh_sandbox, iam, role) -> None:
    answer = iam.put_role_policy(RoleName=role, PolicyName="eice-grant-1", PolicyDocument=POLICY)

    [record] = fresh_sandbox.events.find(event_name="PutRolePolicy")
    assert record["requestID"] == answer["ResponseMetadata"]["RequestId"]
    assert record["eventSource"] == "iam.amazonaws.com"
    assert record["awsRegion"] == "us-east-1"
    assert record["requestParameters"] == {
        "roleName": role,
        "policyName": "eice-grant-1",
        "policyDocument": POLICY,
    }
    assert record["userIdentity"]["type"] == "IAMUser"
    assert "errorCode" not in record
    assert fresh_sandbox.faults.counts["iam:PutRolePolicy"] == 1


def test_failed_delete_is_recorded_with_its_error(fresh_sandbox, iam, role) -> None:
    with pytest.raises(ClientError):
        iam.delete_role_policy(RoleName=role, PolicyName="never-written")

    [record] = fresh_sandbox.events.find(event_name="DeleteRolePolicy")
    assert record["errorCode"] == "NoSuchEntityException"
    assert record["requestParameters"] == {"roleName": role, "policyName": "never-written"}


def test_caller_identity_comes_from_the_access_key(fresh_sandbox, client_for, iam, role) -> None:
    user = f"admin-{role}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    as_user = client_for(fresh_sandbox, "iam", key=key["AccessKeyId"], secret=key["SecretAccessKey"])

    as_user.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=POLICY)

    identity = fresh_sandbox.events.find(event_name="PutRolePolicy")[0]["userIdentity"]
    assert identity["userName"] == user
    assert identity["accessKeyId"] == key["AccessKeyId"]
    assert identity["arn"].endswith(f":user/{user}")


def test_throttling_and_service_failures_at_the_configured_rate(fresh_sandbox, iam) -> None:
    fresh_sandbox.faults.iam_throttle_rate = 1.0
    with pytest.raises(ClientError) as throttled:
        iam.list_roles()
    assert throttled.value.response["Error"]["Code"] == "Throttling"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    fresh_sandbox.faults.update({"iam_throttle_rate": 0.0, "iam_error_rate": 1.0})
    with pytest.raises(ClientError) as failed:
        iam.list_roles()
    assert failed.value.response["Error"]["Code"] == "ServiceFailure"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    fresh_sandbox.faults.update({"iam_error_rate": 0.5})
    fresh_sandbox.faults.seed(7)
    outcomes = []
    for _ in range(20):
        try:
            iam.list_roles(MaxItems=1)
            outcomes.append(True)
        except ClientError:
            outcomes.append(False)
    assert 3 <= outcomes.count(False) <= 17


@pytest.mark.parametrize(("code", "status"), [("AccessDenied", 403), ("UnmodifiableEntity", 400)])
def test_refused_role_is_answered_and_recorded(fresh_sandbox, iam, role, code, status) -> None:
    fresh_sandbox.faults.refused_roles = {role: code}

    with pytest.raises(ClientError) as refused:
        iam.put_role_policy(RoleName=role, PolicyName="eice-grant-2", PolicyDocument=POLICY)

    assert refused.value.response["Error"]["Code"] == code
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == []
    [record] = fresh_sandbox.events.find(event_name="PutRolePolicy")
    assert record["errorCode"] in {code, code + "Exception"}


def test_latency_slows_every_iam_call(fresh_sandbox, iam) -> None:
    fresh_sandbox.faults.iam_latency_s = 0.2
    started = time.monotonic()
    iam.list_roles(MaxItems=1)
    assert time.monotonic() - started >= 0.2


def _http(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as answer:
        return json.loads(answer.read())


def test_admin_api_sets_faults_and_shows_events_and_counters(fresh_sandbox, iam, role) -> None:
    base = f"{fresh_sandbox.url}/_sandbox"
    _http(f"{base}/faults", {"refused_roles": {role: "AccessDenied"}})
    with pytest.raises(ClientError):
        iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=POLICY)
    _http(f"{base}/cloudtrail-delay", {"delay_s": 3})

    events = _http(f"{base}/events")
    counters = _http(f"{base}/counters")

    assert fresh_sandbox.faults.refused_roles == {role: "AccessDenied"}
    assert fresh_sandbox.events.delay_s == 3
    assert [e["eventName"] for e in events] == ["PutRolePolicy"]
    assert counters["counts"]["iam:PutRolePolicy"] == 1
