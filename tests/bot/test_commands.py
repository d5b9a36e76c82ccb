"""`/eice help`, unknown input, `list`, `pending` and `link` over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from access.audit.models import AuditEvent
from access.grants.models import Grant
from access.principals.models import PrincipalLink
from tests.bot.harness import World, eventually


def said(w: World, user: str, fragment: str, *, after: int = 0) -> list[dict[str, Any]]:
    """The ephemeral answers `user` got (since the `after`-th) that contain `fragment`."""
    return [e for e in w.slack.ephemerals(user)[after:] if fragment in e["text"]]


def dev_worker(w: World) -> Any:
    """The auto-approved dev instance named worker (alice's grants here leave dev-box to other tests)."""
    return next(i for i in w.estate.instances if i.name == "worker" and i.env == "dev")


def acts_of(w: World, actor: str) -> int:
    """How many audit rows name `actor` (background work of the bot itself is not counted)."""
    with w.rt.db.transaction() as s:
        return len(s.scalars(select(AuditEvent.seq).where(AuditEvent.actor == actor)).all())


def live_grant(w: World, user: str, instance_id: str) -> Grant | None:
    with w.rt.db.transaction() as s:
        return s.scalars(
            select(Grant).where(
                Grant.requester_id == user,
                Grant.instance_id == instance_id,
                Grant.status == "active",
            )
        ).first()


def dave_role(w: World) -> str:
    """A role for dave, who is in no `[principals]` map (IAM users have too little policy room)."""
    iam = w.iam()
    try:
        role = iam.get_role(RoleName="dave")["Role"]
    except iam.exceptions.NoSuchEntityException:
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{w.estate.account_id}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        role = iam.create_role(RoleName="dave", Path="/eice/", AssumeRolePolicyDocument=trust)["Role"]
    return str(role["Arn"])


def test_help_and_empty_text_answer_usage_in_the_ack(world: World) -> None:
    for text in ("help", ""):
        ack = world.driver.command("U0ALICE", text)
        assert ack.status == 200
        assert ack.json is not None and ack.json["response_type"] == "ephemeral"
        assert "*Usage:* `/eice <command>`" in ack.json["text"]
        assert "`link @user <role ARN>` (admins)" in ack.json["text"]


def test_unknown_subcommand_answers_usage_and_changes_nothing(world: World) -> None:
    before = (world.count("access_requests"), acts_of(world, "U0ALICE"))
    ack = world.driver.command("U0ALICE", "grant-me web-1 forever")
    assert ack.status == 200 and ack.json is not None
    assert "unknown command 'grant-me'" in ack.json["text"]
    assert "*Usage:*" in ack.json["text"]
    ack = world.driver.command("U0ALICE", "list everything")
    assert ack.json is not None and "takes no arguments" in ack.json["text"]
    assert (world.count("access_requests"), acts_of(world, "U0ALICE")) == before


def test_list_shows_only_my_live_grants(world: World) -> None:
    dev = dev_worker(world)
    world.driver.command("U0ALICE", f"request {dev.instance_id} 30m list test")
    grant = eventually(lambda: live_grant(world, "U0ALICE", dev.instance_id))

    seen = len(world.slack.ephemerals("U0ALICE"))
    ack = world.driver.command("U0ALICE", "list")
    assert ack.status == 200
    [answer] = eventually(lambda: said(world, "U0ALICE", "*Your grants*", after=seen))
    assert f"`{grant.id}` `{dev.instance_id}` port 22 as `ec2-user`: *active* until <!date^" in answer["text"]

    seen = len(world.slack.ephemerals("U0BOB"))
    world.driver.command("U0BOB", "list")
    eventually(lambda: said(world, "U0BOB", "You have no live grants.", after=seen))
    assert grant.id not in str(world.slack.ephemerals("U0BOB")[seen:])


def test_pending_shows_what_waits_on_me_and_what_i_wait_for(world: World) -> None:
    db = world.estate.instance("db-1")
    world.driver.command("U0ALICE", "request db-1 15m pending test")
    request = eventually(
        lambda: world.request_row(requester_id="U0ALICE", instance_id=db.instance_id, status="pending")
    )

    seen = len(world.slack.ephemerals("U0BOB"))
    world.driver.command("U0BOB", "pending")
    [answer] = eventually(lambda: said(world, "U0BOB", "*Waiting on you*", after=seen))
    assert f"`{request.id}` <@U0ALICE>" in answer["text"] and "(0 of 1)" in answer["text"]

    seen = len(world.slack.ephemerals("U0ALICE"))
    world.driver.command("U0ALICE", "pending")
    [answer] = eventually(lambda: said(world, "U0ALICE", "*Your pending requests*", after=seen))
    assert f"`{request.id}`" in answer["text"]
    assert "*Waiting on you*" not in answer["text"]  # nobody may approve their own request

    seen = len(world.slack.ephemerals("U0DAVE"))
    world.driver.command("U0DAVE", "pending")
    [answer] = eventually(lambda: said(world, "U0DAVE", "Nothing is waiting", after=seen))
    assert request.id not in answer["text"]


def test_non_admin_link_is_refused_and_changes_nothing(world: World) -> None:
    arn = world.estate.role_arns["bob"]
    before = acts_of(world, "U0ALICE")
    seen = len(world.slack.ephemerals("U0ALICE"))
    ack = world.driver.command("U0ALICE", f"link <@U0CAROL|carol> {arn}")
    assert ack.status == 200
    eventually(lambda: said(world, "U0ALICE", "only admins can link users", after=seen))
    with world.rt.db.transaction() as s:
        assert s.get(PrincipalLink, "U0CAROL") is None
    assert acts_of(world, "U0ALICE") == before


def test_link_with_a_bad_arn_is_a_usage_error(world: World) -> None:
    ack = world.driver.command("U0ADMIN", "link <@U0DAVE> arn:aws:s3:::bucket")
    assert ack.json is not None and "is not an IAM role or user ARN" in ack.json["text"]
    with world.rt.db.transaction() as s:
        assert s.get(PrincipalLink, "U0DAVE") is None


def test_admin_links_a_user_who_can_then_get_access(world: World) -> None:
    dev = world.estate.instance("dev-box")
    role_arn = dave_role(world)

    seen = len(world.slack.ephemerals("U0DAVE"))
    world.driver.command("U0DAVE", "request dev-box 30m before link")
    eventually(lambda: said(world, "U0DAVE", "you have no IAM principal", after=seen))

    seen = len(world.slack.ephemerals("U0ADMIN"))
    world.driver.command("U0ADMIN", f"link <@U0DAVE|dave> {role_arn}")
    eventually(lambda: said(world, "U0ADMIN", f"<@U0DAVE> now acts as `{role_arn}`", after=seen))
    with world.rt.db.transaction() as s:
        link = s.get(PrincipalLink, "U0DAVE")
        assert link is not None and (link.principal_arn, link.linked_by) == (role_arn, "U0ADMIN")
        audited = s.scalars(select(AuditEvent).where(AuditEvent.kind == "principal.linked")).all()
        assert [(e.actor, e.detail["user"]) for e in audited][-1] == ("U0ADMIN", "U0DAVE")

    world.driver.command("U0DAVE", "request dev-box 30m after link")
    grant = eventually(lambda: live_grant(world, "U0DAVE", dev.instance_id))
    assert grant.principal_arn == role_arn
    eventually(lambda: f"eice-grant-{grant.id}" in world.policies("dave"))


@pytest.mark.parametrize(
    ("who", "arn", "refusal"),
    [
        ("<@U0NOSUCHUSER>", "role:dave", "<@U0NOSUCHUSER> is not in this workspace; nothing was linked"),
        ("<@U0CAROL|carol>", "arn:aws:iam::{account}:role/eice/nobody", "does not exist in IAM; nothing"),
    ],
)
def test_a_link_to_nobody_is_refused_and_changes_nothing(
    world: World, who: str, arn: str, refusal: str
) -> None:
    """Both used to be stored, and show up only later as requests that fail."""
    target = dave_role(world) if arn == "role:dave" else arn.format(account=world.estate.account_id)
    seen = len(world.slack.ephemerals("U0ADMIN"))
    before = acts_of(world, "U0ADMIN")
    world.driver.command("U0ADMIN", f"link {who} {target}")
    eventually(lambda: said(world, "U0ADMIN", refusal, after=seen))
    with world.rt.db.transaction() as s:
        assert s.get(PrincipalLink, "U0NOSUCHUSER") is None and s.get(PrincipalLink, "U0CAROL") is None
    assert acts_of(world, "U0ADMIN") == before
