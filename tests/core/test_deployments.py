"""Two bots in one AWS account (`[aws] deployment`): each names, reconciles and revokes only
its own grant policies, even on the same role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from access.config.model import Config
from access.grants.models import Grant, GrantStatus
from access.ids import new_id
from access.runtime import Runtime
from access.scheduler.reconciler import reconcile
from access.workflows import approve_request, revoke_now
from sandbox.aws.seed import Estate
from tests.core.conftest import make_runtime
from tests.core.test_lifecycle import ALICE, BOB, ask, grant_of
from tests.dbs import sqlite_database


@pytest.fixture
def staging(config: Config, tmp_path: Path, estate: Estate) -> Iterator[Runtime]:
    """A second bot, deployment "staging", with its own database, in the same account."""
    named = config.model_copy(update={"aws": config.aws.model_copy(update={"deployment": "staging"})})
    folder = tmp_path / "staging"
    folder.mkdir()
    with sqlite_database(folder) as url:
        runtime = make_runtime(url, named, claim_lease_s=1.0)
        yield runtime
        for arn in [*estate.role_arns.values(), estate.user_arn]:
            for name in runtime.iam.list_grant_names(arn, "staging"):
                runtime.iam.delete(arn, name)
        runtime.db.dispose()


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
