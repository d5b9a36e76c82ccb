"""The pure parts: NACL rule order, the report's dict form, and the Slack rendering."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from access.preflight.network import evaluate_acl
from access.preflight.report import Check, PreflightReport
from bot.preflight_blocks import headline, preflight_summary_blocks, preflight_text

PEER = IPv4Network("10.0.1.0/24")


def entry(
    number: int,
    action: str,
    cidr: str = "0.0.0.0/0",
    ports: tuple[int, int] | None = None,
    *,
    egress: bool = False,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "RuleNumber": number,
        "RuleAction": action,
        "CidrBlock": cidr,
        "Egress": egress,
        "Protocol": "6" if ports else "-1",
    }
    if ports:
        rule["PortRange"] = {"From": ports[0], "To": ports[1]}
    return rule


def test_lower_numbered_allow_wins_over_a_later_deny() -> None:
    rules = [entry(200, "deny", ports=(22, 22)), entry(100, "allow", "10.0.0.0/16", (22, 22))]
    assert evaluate_acl(rules, egress=False, peer=PEER, ports=(22, 22)).allowed


def test_deny_before_allow_blocks_and_names_the_rule() -> None:
    rules = [entry(100, "allow"), entry(90, "deny", "10.0.1.7/32", (22, 22))]
    verdict = evaluate_acl(rules, egress=False, peer=PEER, ports=(22, 22))
    assert (verdict.allowed, verdict.rule_number) == (False, 90)


def test_nothing_allowed_hits_the_default_deny() -> None:
    rules = [entry(100, "allow", ports=(443, 443))]
    verdict = evaluate_acl(rules, egress=False, peer=PEER, ports=(22, 22))
    assert (verdict.allowed, verdict.rule_number) == (False, 32767)


def test_ephemeral_range_must_be_covered_whole() -> None:
    partial = [entry(100, "allow", ports=(32768, 65535), egress=True)]
    assert not evaluate_acl(partial, egress=True, peer=PEER, ports=(1024, 65535)).allowed
    split = [*partial, entry(110, "allow", ports=(1024, 32767), egress=True)]
    assert evaluate_acl(split, egress=True, peer=PEER, ports=(1024, 65535)).allowed


def test_rules_of_the_other_direction_are_ignored() -> None:
    rules = [entry(100, "allow", egress=True)]
    assert not evaluate_acl(rules, egress=False, peer=PEER, ports=(22, 22)).allowed


def report(*checks: Check) -> PreflightReport:
    return PreflightReport(
        instance_ref="web-1",
        instance_id="i-0a1b2c3d4e5f60718",
        region="us-east-1",
        endpoint_id="eice-0123456789abcdef0",
        port=22,
        os_user="ec2-user",
        checks=checks,
    )


def test_verdicts() -> None:
    assert report(Check("port", "ok", "22")).verdict == "reachable"
    assert report(Check("port", "warning", "8080 unverified")).verdict == "warnings"
    failing = report(
        Check("port", "warning", "w"),
        Check(
            "instance-sg-ingress",
            "failure",
            "instance SG sg-0a1 has no inbound 22 from the endpoint",
        ),
        Check("instance", "failure", "later"),
    )
    assert failing.verdict == "will fail: instance SG sg-0a1 has no inbound 22 from the endpoint"
    assert PreflightReport.from_dict(failing.to_dict()) == failing


def test_summary_blocks_show_only_what_is_not_ok() -> None:
    data = report(
        Check("instance", "ok", "running"),
        Check(
            "instance-sg-ingress",
            "failure",
            "instance SG sg-0a1 has no inbound 22 from the endpoint",
            "aws ec2 authorize-security-group-ingress --group-id sg-0a1",
        ),
        Check("port", "warning", "port 8080 <unverified>"),
    ).to_dict()
    blocks = preflight_summary_blocks(data)
    assert blocks[0]["text"]["text"] == (
        "*Pre-flight:* ❌ will fail: instance SG sg-0a1 has no inbound 22 from the endpoint"
    )
    lines = [b["elements"][0]["text"] for b in blocks[1:]]
    assert len(lines) == 2
    assert "fix: `aws ec2 authorize-security-group-ingress --group-id sg-0a1`" in lines[0]
    assert lines[1] == "⚠️ *port*: port 8080 &lt;unverified&gt;"
    assert len(preflight_summary_blocks(data, full=True)) == 4


def test_headlines() -> None:
    assert headline(report(Check("port", "ok", "22")).to_dict()) == "✅ reachable"
    warned = report(Check("a", "warning", "first"), Check("b", "warning", "second")).to_dict()
    assert headline(warned) == "⚠️ reachable with 2 warnings: first"


def test_doctor_text_lists_every_check() -> None:
    text = preflight_text(
        report(Check("instance", "ok", "running"), Check("port", "warning", "8080", "use 22")).to_dict()
    )
    assert text.splitlines()[0].startswith("*Pre-flight for `i-0a1b2c3d4e5f60718`*")
    assert "✅ *instance*: running" in text
    assert "fix: `use 22`" in text


def test_the_size_estimate_counts_the_describe_calls_a_rule_adds() -> None:
    """`/eice doctor`'s budget line for a rule with allow_describe used to leave out the
    statement that rule puts in every grant (some 250 characters)."""
    from access.aws.ec2 import EndpointInfo, InstanceInfo
    from access.grants.policy import GrantScope, grant_policy, policy_size
    from access.preflight.checks import ESTIMATE_START, ESTIMATE_WINDOW, estimated_grant_size

    instance = InstanceInfo(
        "i-0123456789abcdef0", "123456789012", "us-east-1", "web-1", {}, "running", "vpc-1", "subnet-1",
        "10.0.1.4",
    )  # fmt: skip
    endpoint = EndpointInfo(
        "eice-0123456789abcdef0", "arn", "dns", "create-complete", "vpc-1", "subnet-1", False
    )  # fmt: skip
    scope = GrantScope(
        account_id="123456789012", region="us-east-1", instance_id=instance.instance_id,
        endpoint_id=endpoint.endpoint_id, private_ip="10.0.1.4", port=22, os_user="ec2-user",
        starts_at=ESTIMATE_START, expires_at=ESTIMATE_START + ESTIMATE_WINDOW, allow_describe=True,
        owner="f" * 16,
    )  # fmt: skip
    with_describe = estimated_grant_size(instance, endpoint, 22, "ec2-user", 300, allow_describe=True)
    assert with_describe == policy_size(grant_policy(scope))
    assert with_describe > estimated_grant_size(instance, endpoint, 22, "ec2-user", 300) + 200
