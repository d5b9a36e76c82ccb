"""What the Lambda package gets (scripts/lambda_requirements.py): every dependency its
handlers import, and none of what only the sandbox or the long-running server use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from lambda_requirements import NOT_ON_LAMBDA, lambda_requirements, requirement_name  # noqa: E402

# Every module the Lambda handlers reach, also those imported inside functions.
LAMBDA_MODULES = [
    "bot.lambda_handler", "access.scheduler.tick", "access.audit.collector", "access.migrate",
    "bot.listeners.commands", "bot.listeners.buttons", "bot.listeners.home", "bot.listeners.decisions",
    "bot.listeners.audit_pages", "bot.notify", "bot.activity", "bot.audit_blocks", "bot.preflight_blocks",
    "access.preflight", "access.workflows", "access.grants.revoke", "access.scheduler.reconciler",
    "access.scheduler.reaper", "access.principals.service",
]  # fmt: skip


def test_the_lambda_handlers_import_nothing_left_out_of_the_package() -> None:
    probe = (
        "import importlib, sys\n"
        f"for name in {LAMBDA_MODULES!r}: importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = set(done.stdout.split())
    assert not loaded & NOT_ON_LAMBDA


def test_the_requirements_are_the_projects_but_those() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lambda_requirements.py")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines == lambda_requirements()
    names = {requirement_name(line) for line in lines}
    assert {"slack-bolt", "boto3", "sqlalchemy", "alembic", "psycopg", "pydantic-settings"} <= names
    assert not names & NOT_ON_LAMBDA
    assert requirement_name("psycopg[binary]>=3.1") == "psycopg"
