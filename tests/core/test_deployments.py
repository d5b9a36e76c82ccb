"""Two bots in one AWS account: each names, reconciles and revokes only its own grant
policies, even on the same role: by name with different `[aws] deployment`s, and by the
installation ID in each policy's owner Sid when both leave the deployment unset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from access.config.model import Config
from access.grants.models import Grant, GrantStatus
from access.grants.policy import policy_name, policy_owner
from access.ids import new_id
from access.runtime import Runtime
from access.scheduler.reconciler import reconcile
from access.workflows import approve_request, revoke_now
from sandbox.aws.seed import Estate
from tests.core.conftest import make_runtime
from tests.core.test_lifecycle import ALICE, BOB, ask, grant_of
from tests.dbs import sqlite_database


def second_bot(config: Config, tmp_path: Path, estate: Estate, deployment: str) -> Iterator[Runtime]:
    """Another installation (its own database) in the same account, with `deployment`."""
    named = config.model_copy(update={"aws": config.aws.model_copy(update={"deployment": deployment})})
    folder = tmp_path / f"second-{deployment}"
    folder.mkdir()
    with sqlite_database(folder) as url:
        runtime = make_runtime(url, named, claim_lease_s=1.0)
        yield runtime
        with runtime.db.transaction() as session:
            ids = set(session.scalars(select(Grant.id)))
        for arn in [*estate.role_arns.values(), estate.user_arn]:
            for name in runtime.iam.list_grant_names(arn, deployment):
                if name.rsplit("-", 1)[-1] in ids:
                    runtime.iam.delete(arn, name)
        runtime.db.dispose()


@pytest.fixture
def staging(config: Config, tmp_path: Path, estate: Estate) -> Iterator[Runtime]:
    """A second bot, deployment "staging"."""
    yield from second_bot(config, tmp_path, estate, "staging")


@pytest.fixture
def twin(config: Config, tmp_path: Path, estate: Estate) -> Iterator[Runtime]:
    """A second bot that, like the first, leaves the deployment unset."""
    yield from second_bot(config, tmp_path, estate, "")


def granted(rt: Runtime) -> Grant:
    request = ask(rt, duration="30m")
    assert approve_request(rt, request.id, BOB).approved
    return grant_of(rt, request.id)


def test_two_deployments_on_one_role_keep_to_their_own_policies(
    rt: Runtime, staging: Runtime, estate: Estate
) -> None:
    alice = estate.role_arns["alice"]
    prod_grant, staging_grant = granted(rt), granted(staging)
    assert prod_grant.policy_name == f"eice-grant-{prod_grant.id}"
    assert staging_grant.policy_name == f"eice-grant-staging-{staging_grant.id}"
    assert {prod_grant.policy_name, staging_grant.policy_name} <= set(rt.iam.list_names(alice))
    assert rt.iam.list_grant_names(alice) == [prod_grant.policy_name]
    assert staging.iam.list_grant_names(alice, "staging") == [staging_grant.policy_name]

    # Neither reconciler takes the other's live policy for an orphan of its own.
    for bot in (rt, staging):
        assert reconcile(bot).orphans_deleted == []
    assert {prod_grant.policy_name, staging_grant.policy_name} <= set(rt.iam.list_names(alice))

    # An orphan named as staging names them is staging's to remove, not prod's.
    orphan = f"eice-grant-staging-{new_id('g')}"
    staging.iam.put(alice, orphan, staging_grant.policy_document)
    assert reconcile(rt).orphans_deleted == []
    assert reconcile(staging).orphans_deleted == [orphan]

    # Revoking in one bot leaves the other's grant in place.
    revoke_now(staging, staging_grant.id, ALICE)
    assert grant_of(staging, staging_grant.request_id).status == GrantStatus.REVOKED
    assert staging.iam.list_grant_names(alice, "staging") == []
    assert rt.iam.list_grant_names(alice) == [prod_grant.policy_name]
    assert grant_of(rt, prod_grant.request_id).status == GrantStatus.ACTIVE


def test_two_installations_with_the_same_naming_leave_each_others_policies(
    rt: Runtime, twin: Runtime, estate: Estate
) -> None:
    alice = estate.role_arns["alice"]
    assert rt.installation_id() != twin.installation_id()
    mine, theirs = granted(rt), granted(twin)
    assert policy_owner(mine.policy_document) == rt.installation_id()
    assert policy_owner(theirs.policy_document) == twin.installation_id()
    both = {mine.policy_name, theirs.policy_name}
    assert both <= set(rt.iam.list_grant_names(alice))  # same naming: a name cannot tell them apart

    # Each reconciler reads the other's policy, sees another owner and leaves it.
    first, second = reconcile(rt), reconcile(twin)
    assert (first.orphans_deleted, first.foreign) == ([], [theirs.policy_name])
    assert (second.orphans_deleted, second.foreign) == ([], [mine.policy_name])
    assert both <= set(rt.iam.list_grant_names(alice))

    # Its own orphan (a policy it wrote whose row is gone, as after restoring a backup) is
    # still removed, and so is one that carries no owner (written before policies had one).
    restored = policy_name(new_id("g"))
    rt.iam.put(alice, restored, mine.policy_document)
    legacy = policy_name(new_id("g"))
    unowned = {**mine.policy_document, "Statement": [
        {k: v for k, v in statement.items() if k != "Sid"} for statement in mine.policy_document["Statement"]
    ]}  # fmt: skip
    assert policy_owner(unowned) is None
    rt.iam.put(alice, legacy, unowned)
    report = reconcile(rt)
    assert sorted(report.orphans_deleted) == sorted([restored, legacy])
    assert report.foreign == [theirs.policy_name]
    assert grant_of(twin, theirs.request_id).status == GrantStatus.ACTIVE
    assert both <= set(rt.iam.list_grant_names(alice))
