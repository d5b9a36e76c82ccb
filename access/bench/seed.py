"""Seed many active grants at once: their real policies in the sandbox IAM, then their rows.

Policies go straight into moto's in-process IAM backend (the sandbox runs in this
process), rows go in with bulk INSERTs. The grants look exactly like ones the bot
applied: approved request, `active`, policy on the requester's role, already reminded.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.iam.models import iam_backends
from sqlalchemy import insert

from access.access_requests.models import AccessRequest, RequestStatus
from access.db import Database
from access.grants.models import Grant, GrantStatus
from access.grants.policy import ROLE_INLINE_LIMIT, GrantScope, grant_policy, policy_name, policy_size
from access.ids import new_id
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from sandbox.slack.conversations import Message
from sandbox.slack.server import SlackSandbox

ROLE_PATH = "/eice-bench/"
REQUESTERS = ("U0ALICE", "U0CAROL", "U0DAVE")
APPROVALS = "C0APPROVALS"


@dataclass(frozen=True)
class SeededGrant:
    """What the bench needs to check a seeded grant afterwards."""

    id: str
    role_name: str
    policy_name: str
    expires_at: datetime


def _trust() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def seed_grants(
    aws: AwsSandbox,
    estate: Estate,
    db: Database,
    expiries: list[datetime],
    *,
    role_prefix: str = "bench",
    rng: random.Random | None = None,
    slack: SlackSandbox | None = None,
) -> list[SeededGrant]:
    """Create one active grant per expiry, spread over as many bench roles as IAM's size limit needs.

    Args:
        aws: the in-process AWS sandbox (its moto backend gets the roles and policies).
        estate: the seeded estate; grants point at its instances and endpoints.
        db: the bot's database (migrated).
        expiries: one `expires_at` per grant.
        role_prefix: names the bench roles `<prefix>-00001`, ... (unique per run).
        rng: randomness for instance choice (seeded for repeatable runs).
        slack: when given, each request gets its approval card in the Slack sandbox, as an
            approved request has (the revocation notice is a reply in the card's thread).
    """
    rng = rng or random.Random(7)
    iam = iam_backends[aws.account_id]["aws"]
    now = datetime.now(UTC).replace(microsecond=0)
    instances = [i for i in estate.instances if any(e.vpc_id == i.vpc_id for e in estate.endpoints.values())]
    endpoint_for = {e.vpc_id: e for e in estate.endpoints.values()}
    per_role = 0
    seeded: list[SeededGrant] = []
    requests: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    role_name, role_arn, used = "", "", ROLE_INLINE_LIMIT
    role: Any = None
    for index, expires_at in enumerate(expiries):
        instance = rng.choice(instances)
        endpoint = endpoint_for[instance.vpc_id]
        grant_id, request_id = new_id("g"), new_id("r")
        starts = now - timedelta(minutes=30)
        scope = GrantScope(
            account_id=estate.account_id,
            region=estate.region,
            instance_id=instance.instance_id,
            endpoint_id=endpoint.endpoint_id,
            private_ip=instance.private_ip,
            port=22,
            os_user="ec2-user",
            starts_at=starts,
            expires_at=expires_at,
            overshoot_s=300,
        )
        document = grant_policy(scope)
        size = policy_size(document)
        if used + size > ROLE_INLINE_LIMIT:
            per_role += 1
            role_name = f"{role_prefix}-{per_role:05d}"
            role = iam.create_role(role_name, _trust(), ROLE_PATH, None, "eice bench", [], None)
            role_arn, used = role.arn, 0
        used += size
        name = policy_name(grant_id)
        # On the role object: moto's put_role_policy finds the role by a scan of every role.
        role.put_policy(name, json.dumps(document, separators=(",", ":")))
        requester = REQUESTERS[index % len(REQUESTERS)]
        requests.append(
            {
                "id": request_id,
                "status": RequestStatus.APPROVED,
                "requester_id": requester,
                "principal_arn": role_arn,
                "account_id": estate.account_id,
                "region": estate.region,
                "instance_id": instance.instance_id,
                "instance_name": instance.name,
                "instance_tags": {"Name": instance.name, "env": instance.env},
                "endpoint_id": endpoint.endpoint_id,
                "endpoint_dns": endpoint.dns_name,
                "private_ip": instance.private_ip,
                "port": 22,
                "os_user": "ec2-user",
                "duration_s": int((expires_at - starts).total_seconds()),
                "reason": "bench",
                "approvers": ["U0BOB"],
                "created_at": starts,
                "approval_deadline": starts + timedelta(minutes=10),
                "decided_at": starts,
                "decided_by": "U0BOB",
                "approvals_count": 1,
            }
        )
        grants.append(
            {
                "id": grant_id,
                "request_id": request_id,
                "status": GrantStatus.ACTIVE,
                "requester_id": requester,
                "principal_arn": role_arn,
                "policy_name": name,
                "policy_document": document,
                "account_id": estate.account_id,
                "region": estate.region,
                "instance_id": instance.instance_id,
                "endpoint_id": endpoint.endpoint_id,
                "private_ip": instance.private_ip,
                "port": 22,
                "os_user": "ec2-user",
                "overshoot_s": 300,
                "break_glass": False,
                "created_at": starts,
                "starts_at": starts,
                "expires_at": expires_at,
                "applied_at": starts,
                "attempts": 0,
                "policy_version": 1,
                "applied_version": 1,
                "extensions": 0,
                # Grants this close to expiry had their reminder DM long ago.
                "reminded_at": starts,
            }
        )
        seeded.append(SeededGrant(grant_id, role_name, name, expires_at))
    if slack is not None:
        for request, ts in zip(requests, _post_cards(slack, [r["id"] for r in requests]), strict=True):
            request["card_channel"], request["card_ts"] = APPROVALS, ts
    with db.transaction() as session:
        for start in range(0, len(grants), 1000):
            session.execute(insert(AccessRequest), requests[start : start + 1000])
            session.execute(insert(Grant), grants[start : start + 1000])
    return seeded


def _post_cards(slack: SlackSandbox, request_ids: list[str]) -> list[str]:
    """Approval cards straight into the Slack stand-in's history (thousands over HTTP take too long)."""
    stamps = []
    with slack._lock:
        for request_id in request_ids:
            ts = slack._next_ts()
            text = f"Access request {request_id}: approved"
            block = {"type": "section", "text": {"type": "mrkdwn", "text": text}, "block_id": request_id}
            slack._messages.append(Message(APPROVALS, ts, text, [block], slack.bot_user_id))
            stamps.append(ts)
    return stamps


def spread(count: int, start: datetime, window_s: float) -> list[datetime]:
    """`count` instants spread evenly over `window_s` seconds from `start`, to the millisecond."""
    step_ms = window_s * 1000 / max(1, count)
    base = start.replace(microsecond=start.microsecond // 1000 * 1000)
    return [base + timedelta(milliseconds=int(step_ms * (i + 0.5))) for i in range(count)]
