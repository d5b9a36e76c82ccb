"""Many approvers at once, in threads and in processes: one grant, one PutRolePolicy."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from access.access_requests.prepare import RequestInput
from access.config.permissions import Actor
from access.errors import AccessError
from access.grants.models import Grant
from access.runtime import Runtime
from access.workflows import approve_request, submit_request
from sandbox.aws.server import AwsSandbox
from tests.core.conftest import CONFIG_TOML

ROOT = Path(__file__).resolve().parents[2]


def test_twenty_threads_approving_make_one_grant(rt: Runtime, aws: AwsSandbox) -> None:
    request = submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "30m")).request
    before = aws.faults.counts["iam:PutRolePolicy"]
    barrier = threading.Barrier(20)
    grants: list[str] = []
    errors: list[str] = []

    def click(i: int) -> None:
        barrier.wait()
        try:
            outcome = approve_request(rt, request.id, Actor(f"U0APPR{i:02d}", frozenset({"S0ONCALL"})))
            if outcome.grant_id:
                grants.append(outcome.grant_id)
        except AccessError as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(grants) == 1
    assert len(errors) == 19 and all("already approved" in e for e in errors), errors[:3]
    assert aws.faults.counts["iam:PutRolePolicy"] - before == 1
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Grant)) == 1


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_processes_approving_on_postgres_make_one_grant(
    rt: Runtime, aws: AwsSandbox, db_url: str, tmp_path: Path
) -> None:
    request = submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "30m")).request
    before = aws.faults.counts["iam:PutRolePolicy"]
    config_file = tmp_path / "eice.toml"
    config_file.write_text(CONFIG_TOML)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.core.approve_many",
                db_url,
                str(config_file),
                request.id,
                str(p),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for p in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    granted = [line for out, _ in outputs for line in out.splitlines() if line.startswith("granted ")]
    assert len(granted) == 1, outputs
    assert aws.faults.counts["iam:PutRolePolicy"] - before == 1
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Grant)) == 1
