"""Who the sandbox thinks is calling, and which policies apply to them."""

from __future__ import annotations

import json

from sandbox.aws import identity
from sandbox.aws.server import AwsSandbox

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _policy(action: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
        }
    )


def test_iam_user_keys_resolve_to_the_user_and_its_groups_policies(
    sandbox: AwsSandbox, client_for, unique
) -> None:
    iam = client_for(sandbox, "iam")
    user, group = f"dave-{unique}", f"ops-{unique}"
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="own", PolicyDocument=_policy("ec2:Describe*"))
    iam.put_group_policy(GroupName=group, PolicyName="grp", PolicyDocument=_policy("iam:Get*"))
    key = iam.create_access_key(UserName=user)["AccessKey"]

    found = identity.lookup_access_key(key["AccessKeyId"])
    assert found is not None
    principal, secret, token = found

    assert (principal.kind, principal.name, token) == ("IAMUser", user, None)
    assert secret == key["SecretAccessKey"]
    actions = {d["Statement"][0]["Action"] for d in identity.identity_policies(principal)}
    assert actions == {"ec2:Describe*", "iam:Get*"}
    assert identity.cloudtrail_user_identity(principal)["userName"] == user


def test_assumed_role_credentials_resolve_to_the_session(sandbox: AwsSandbox, client_for, unique) -> None:
    iam, sts = client_for(sandbox, "iam"), client_for(sandbox, "sts")
    role = f"alice-{unique}"
    role_arn = iam.create_role(RoleName=role, Path="/eice/", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="eice-grant-x", PolicyDocument=_policy("s3:*"))
    managed = iam.create_policy(PolicyName=f"m-{unique}", PolicyDocument=_policy("sqs:*"))
    iam.attach_role_policy(RoleName=role, PolicyArn=managed["Policy"]["Arn"])
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="alice@example.com")["Credentials"]

    found = identity.lookup_access_key(creds["AccessKeyId"])
    assert found is not None
    principal, secret, token = found

    assert principal.kind == "AssumedRole"
    assert principal.role_arn == role_arn
    assert principal.session_name == "alice@example.com"
    assert principal.arn == f"arn:aws:sts::123456789012:assumed-role/{role}/alice@example.com"
    assert principal.principal_id.startswith("AROA")
    assert (secret, token) == (creds["SecretAccessKey"], creds["SessionToken"])
    actions = {d["Statement"][0]["Action"] for d in identity.identity_policies(principal)}
    assert actions == {"s3:*", "sqs:*"}
    user_identity = identity.cloudtrail_user_identity(principal)
    assert user_identity["type"] == "AssumedRole"
    assert user_identity["sessionContext"]["sessionIssuer"]["arn"] == role_arn


def test_session_token_credentials_resolve_to_the_user(sandbox: AwsSandbox, client_for, unique) -> None:
    iam = client_for(sandbox, "iam")
    user = f"erin-{unique}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    sts = client_for(sandbox, "sts", key=key["AccessKeyId"], secret=key["SecretAccessKey"])

    creds = sts.get_session_token(DurationSeconds=900)["Credentials"]

    found = identity.lookup_access_key(creds["AccessKeyId"])
    assert found is not None
    principal, secret, token = found
    assert (principal.kind, principal.name) == ("IAMUser", user)
    assert (secret, token) == (creds["SecretAccessKey"], creds["SessionToken"])


def test_unknown_keys_are_not_found() -> None:
    assert identity.lookup_access_key("AKIANEVERISSUED00000") is None
    assert identity.principal_for_key("AKIANEVERISSUED00000").name == "AKIANEVERISSUED00000"


def test_registered_json_target_takes_the_request(fresh_sandbox: AwsSandbox, client_for) -> None:
    seen = []

    def send_key(request):
        seen.append(request)
        body = json.dumps({"RequestId": "r-1", "Success": True}).encode()
        return 200, {"Content-Type": "application/x-amz-json-1.1"}, body

    fresh_sandbox.register_json_target("AWSEC2InstanceConnectService.SendSSHPublicKey", send_key)
    eic = client_for(fresh_sandbox, "ec2-instance-connect")

    answer = eic.send_ssh_public_key(
        InstanceId="i-0123456789abcdef0",
        InstanceOSUser="ec2-user",
        SSHPublicKey="ssh-ed25519 " + "A" * 80,
    )

    assert answer["Success"] is True
    assert json.loads(seen[0].body)["InstanceOSUser"] == "ec2-user"
    assert seen[0].region == "us-east-1"
    assert seen[0].client_ip == "127.0.0.1"
