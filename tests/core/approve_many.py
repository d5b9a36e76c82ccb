"""One of two processes racing to approve the same request with ten threads each."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from access.config.loader import parse_config
from access.config.permissions import Actor
from access.errors import AccessError
from access.workflows import approve_request
from tests.core.conftest import make_runtime


def main() -> int:
    db_url, config_file, request_id, proc = sys.argv[1:5]
    rt = make_runtime(db_url, parse_config(Path(config_file).read_text()))
    barrier = threading.Barrier(10)
    lock = threading.Lock()

    def click(i: int) -> None:
        barrier.wait()
        try:
            outcome = approve_request(rt, request_id, Actor(f"U0P{proc}T{i:02d}", frozenset({"S0ONCALL"})))
        except AccessError:
            return
        if outcome.grant_id:
            with lock:
                print(f"granted {outcome.grant_id}", flush=True)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
