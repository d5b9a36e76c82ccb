"""The stand-in keeps up with a benchmark's request rate, with unique increasing ts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from sandbox.slack.server import SlackSandbox


def test_400_concurrent_posts_get_unique_ts_well_above_200_per_second(
    slack: SlackSandbox,
) -> None:
    sessions = [requests.Session() for _ in range(8)]

    def post(i: int) -> str:
        r = sessions[i % 8].post(
            slack.url + "/api/chat.postMessage",
            headers={"Authorization": f"Bearer {slack.token}"},
            json={"channel": "C0LOAD", "text": str(i)},
            timeout=5,
        )
        return str(r.json()["ts"])

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        stamps = list(pool.map(post, range(400)))
    elapsed = time.perf_counter() - started
    assert len(set(stamps)) == 400
    assert 400 / elapsed > 200
    posted = [m.ts for m in slack.messages("C0LOAD")]
    assert posted == sorted(posted, key=float) and len(posted) == 400
