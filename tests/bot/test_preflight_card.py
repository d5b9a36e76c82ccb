"""Issue 6 at the bot: a request whose pre-flight fails shows the failure on the card at once."""

from __future__ import annotations

from typing import Any

from sandbox.aws.account import bot_client
from tests.bot.harness import World, eventually


def ec2(w: World) -> Any:
    return bot_client("ec2", w.aws.url, w.estate.region)


def instance_without_inbound_ssh(w: World, name: str) -> tuple[str, str]:
    """An instance in the prod VPC whose only security group lets nothing in: (instance, SG)."""
    client = ec2(w)
    vpc = w.estate.vpc_ids["prod"]
    sg = client.create_security_group(GroupName=f"{name}-sg", Description="no inbound", VpcId=vpc)["GroupId"]
    image = client.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*x86_64-gp2"]}]
    )["Images"][0]["ImageId"]
    instance = client.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=w.estate.subnet_ids["prod"][1],
        SecurityGroupIds=[sg],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
    )["Instances"][0]
    return str(instance["InstanceId"]), str(sg)


def test_failing_preflight_is_on_the_card_and_told_to_the_requester(world: World) -> None:
    instance_id, sg = instance_without_inbound_ssh(world, "pf-broken")
    endpoint_sg = world.estate.endpoint_sg_ids["prod"]

    ack = world.driver.command("U0ALICE", "request pf-broken 15m checking the card")
    assert ack.status == 200

    verdict = f"will fail: instance SG {sg} has no inbound 22 from the endpoint"
    told = eventually(
        lambda: [
            e for e in world.slack.ephemerals("U0ALICE") if "Pre-flight" in e["text"] and sg in e["text"]
        ]
    )
    request = world.request_row(requester_id="U0ALICE", instance_id=instance_id)
    assert request is not None
    # told before any approver has acted: the request is still pending with no approvals
    assert (request.status, request.approvals_count) == ("pending", 0)
    assert verdict in told[0]["text"] and "/eice doctor" in told[0]["text"]
    # ...and before anyone was paged: the warning reached Slack before the card was posted
    # (the stand-in stamps calls and message ts from one clock)
    card = eventually(lambda: world.card_for(request.id))
    warned = [c.at for c in world.slack.calls if "Pre-flight" in str(c.params) and sg in str(c.params)]
    assert warned and warned[0] <= float(card.ts)

    body = str(card.blocks)
    assert f"*Pre-flight:* ❌ {verdict}" in body
    fix = (
        f"fix: `aws ec2 authorize-security-group-ingress --group-id {sg} --protocol tcp "
        f"--port 22 --source-group {endpoint_sg}"
    )
    assert fix in body
    assert "instance-sg-ingress" in body
    # the healthy checks are not listed on the card, only the headline and what is wrong
    assert "❌ *instance*:" not in body and "✅" not in body


def test_healthy_preflight_says_reachable_on_the_card(world: World) -> None:
    db = world.estate.instance("web-1")
    seen = len(world.slack.ephemerals("U0ALICE"))
    world.driver.command("U0ALICE", "request web-1 15m healthy card")
    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending")
    )
    card = eventually(lambda: world.card_for(request.id))
    assert "*Pre-flight:* ✅ reachable" in str(card.blocks)
    eventually(lambda: [e for e in world.slack.ephemerals("U0ALICE")[seen:] if request.id in e["text"]])
    assert [e for e in world.slack.ephemerals("U0ALICE")[seen:] if "Pre-flight" in e["text"]] == []


def test_doctor_checks_what_a_request_for_the_instance_would_get(world: World) -> None:
    def doctor(text: str) -> str:
        seen = len(world.slack.ephemerals("U0ALICE"))
        world.driver.command("U0ALICE", text)
        found = eventually(
            lambda: [e for e in world.slack.ephemerals("U0ALICE")[seen:] if "Pre-flight for" in e["text"]]
        )
        return str(found[0]["text"])

    db = world.estate.instance("db-1")
    described = world.aws.faults.counts["ec2:DescribeInstances"]
    answer = doctor("doctor db-1")
    assert world.aws.faults.counts["ec2:DescribeInstances"] - described == 1  # rule and pre-flight share it
    # The db rule's OS user, not the default one (the AMI check then has a word to say about
    # it); alice's role checked for room in the instance's account.
    assert f"*Pre-flight for `{db.instance_id}`*" in answer and "port 22, user `postgres`" in answer
    assert "logs in as 'ec2-user', not 'postgres'" in answer and "*policy-budget*" in answer
    assert "port 2222, user `admin`" in doctor("doctor db-1 --port 2222 --user admin")  # flags still win
