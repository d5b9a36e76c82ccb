"""Print the Lambda package's requirements, one per line, from pyproject.toml.

serverless-python-requirements reads a requirements file, not `[project]` in
pyproject.toml. The Lambda runs the Slack handler, the tick and the migrations only, so
what only the local sandbox and the long-running server use stays out of the package:

    python scripts/lambda_requirements.py > requirements-lambda.txt && serverless deploy
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The sandbox (moto, asyncssh), `eice serve`'s HTTP server (waitress), the tunnel client
# (websockets, uvloop) and `eice ssh`'s key generation (cryptography).
NOT_ON_LAMBDA = frozenset({"moto", "asyncssh", "waitress", "websockets", "uvloop", "cryptography"})


def requirement_name(requirement: str) -> str:
    """`psycopg[binary]>=3.1` -> `psycopg`."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    return match.group(0).lower().replace("_", "-")


def lambda_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [r for r in dependencies if requirement_name(r) not in NOT_ON_LAMBDA]


if __name__ == "__main__":
    sys.stdout.write("".join(f"{line}\n" for line in lambda_requirements()))
