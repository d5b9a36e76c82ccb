"""A worker process for the crash tests: runs one unit of work against a real database and
the sandbox, and dies wherever `EICE_FAILPOINTS` says (as a SIGKILL would).

Usage: python -m tests.core.worker DB_URL CONFIG_FILE ACTION ARG [ACTOR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from access.config.loader import parse_config
from access.config.permissions import Actor
from access.scheduler.reaper import reap
from access.workflows import approve_request
from tests.core.conftest import make_runtime


def main() -> int:
    db_url, config_file, action, arg = sys.argv[1:5]
    config = parse_config(Path(config_file).read_text(), source=config_file)
    rt = make_runtime(db_url, config, claim_lease_s=1.0)
    if action == "approve":
        outcome = approve_request(rt, arg, Actor(sys.argv[5]))
        print(outcome.grant_id or "")
    elif action == "reap":
        print(reap(rt).statuses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
