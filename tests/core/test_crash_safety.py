"""Kill a worker (os._exit) at every point between row writes and IAM calls; the reaper and
reconciler must converge: no orphan policy, no active grant without its policy, none past expiry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from access.access_requests.prepare import RequestInput
from access.config.permissions import Actor
from access.grants.models import Grant, GrantStatus
from access.grants.policy import policy_name
from access.ids import new_id
from access.runtime import Runtime
from access.scheduler.reaper import reap
from access.scheduler.reconciler import reconcile
from access.workflows import submit_request
from sandbox.aws.seed import Estate
from tests.core.conftest import CONFIG_TOML

ROOT = Path(__file__).resolve().parents[2]


def run_worker(db_url: str, tmp_path: Path, failpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    config_file = tmp_path / "eice.toml"
    config_file.write_text(CONFIG_TOML)
    env = {**os.environ, "EICE_FAILPOINTS": failpoint, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tests.core.worker", db_url, str(config_file), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def the_grant(rt: Runtime) -> Grant:
    with rt.db.transaction() as session:
        grant = session.scalars(select(Grant)).one()
        session.expunge(grant)
        return grant


def converge(rt: Runtime, *, until: float) -> None:
    """What a restarted process does: reap (after leases lapse) and reconcile."""
    time.sleep(rt.claim_lease_s + 0.2)
    while time.monotonic() < until:
        reap(rt)
        reconcile(rt)
        grant = the_grant(rt)
        if grant.status in (GrantStatus.REVOKED, GrantStatus.FAILED):
            return
        time.sleep(0.3)


def assert_converged(rt: Runtime, estate: Estate) -> None:
    grant = the_grant(rt)
    names = rt.iam.list_grant_names(estate.role_arns["alice"])
    assert grant.status == GrantStatus.REVOKED, grant.last_error
    assert names == [], f"orphan policies left: {names}"
    with rt.db.transaction() as session:
        assert session.scalars(select(Grant).where(Grant.status == GrantStatus.ACTIVE)).all() == []


@pytest.mark.parametrize(
    "point", ["after_approve_commit", "after_claim_before_put", "after_put_before_commit"]
)
def test_killed_while_applying_converges(
    point: str, rt: Runtime, estate: Estate, db_url: str, tmp_path: Path
) -> None:
    request = submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "6s")).request
    result = run_worker(db_url, tmp_path, point, "approve", request.id, "U0BOB")
    assert result.returncode == 77, result.stderr
    assert f"failpoint {point}" in result.stderr
    grant = the_grant(rt)
    assert grant.status == GrantStatus.APPLYING
    # Before expiry the reaper finishes the half-done application: active, policy present.
    time.sleep(rt.claim_lease_s + 0.2)
    reap(rt)
    assert the_grant(rt).status == GrantStatus.ACTIVE
    assert rt.iam.list_grant_names(estate.role_arns["alice"]) == [grant.policy_name]
    converge(rt, until=time.monotonic() + 20)
    assert_converged(rt, estate)


def test_killed_after_delete_before_commit_converges(
    rt: Runtime, estate: Estate, db_url: str, tmp_path: Path
) -> None:
    from access.workflows import approve_request

    request = submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "2s")).request
    approve_request(rt, request.id, Actor("U0BOB"))
    time.sleep(2.5)
    result = run_worker(db_url, tmp_path, "after_delete_before_commit", "reap", "-")
    assert result.returncode == 77, result.stderr
    grant = the_grant(rt)
    assert grant.status == GrantStatus.REVOKING  # IAM already clean, row not yet
    assert rt.iam.list_grant_names(estate.role_arns["alice"]) == []
    converge(rt, until=time.monotonic() + 20)
    assert_converged(rt, estate)


def test_orphan_policy_is_deleted_and_drift_is_repaired(rt: Runtime, estate: Estate) -> None:
    from access.audit.models import AuditEvent
    from access.workflows import approve_request

    request = submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "30m")).request
    grant_id = approve_request(rt, request.id, Actor("U0BOB")).grant_id
    grant = the_grant(rt)
    alice = estate.role_arns["alice"]
    orphan = policy_name(new_id("g"))  # a grant policy of ours that no grant row accounts for
    rt.iam.put(alice, orphan, grant.policy_document)
    not_ours = "eice-grant-by-hand"  # not a name this bot makes: left alone
    rt.iam.put(alice, not_ours, grant.policy_document)
    rt.iam.delete(alice, grant.policy_name)  # someone removed the live grant's policy by hand
    report = reconcile(rt)
    assert report.orphans_deleted == [orphan]
    assert not_ours in rt.iam.list_names(alice)
    rt.iam.delete(alice, not_ours)
    assert report.drift == [grant_id]
    reap(rt)  # re-applies the drifted grant
    assert rt.iam.list_grant_names(alice) == [grant.policy_name]
    with rt.db.transaction() as session:
        kinds = set(session.scalars(select(AuditEvent.kind)))
    assert {"policy.orphan_deleted", "grant.drift", "grant.reapplied"} <= kinds
