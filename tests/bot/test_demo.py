"""`eice demo`, the README's first command, run as a newcomer runs it: every step behaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_tells_the_whole_story_and_every_step_behaves(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EICE_", "SLACK_"))}
    scratch = tmp_path / "tmp"  # where the demo keeps its files (it leaves them for a look)
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    result = subprocess.run(
        [sys.executable, "-m", "access.cli.main", "demo", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    story = json.loads(result.stdout) if result.stdout.strip() else {"steps": []}
    failed = [step for step in story["steps"] if not step["ok"]]
    assert result.returncode == 0 and failed == [], (failed, result.stderr[-3000:])
    assert story["ok"] is True and story["audit_verified"] is True
    names = [step["name"] for step in story["steps"]]
    assert names[0] == "migrate" and names[-1] == "/eice audit <grant>"
    events = story["cloudtrail_events"]
    assert {e["grant_id"] for e in events} == {story["grant"]["id"]}
    refused = [(e["event_name"], e["flag"]) for e in events if e["error_code"]]
    # The other port, tried during the grant, is kept with it and flagged; then the try after
    # expiry (flagged too when CloudTrail's whole second falls after the expiry's).
    assert refused[0] == ("OpenTunnel", "outside_grant")
    assert refused[1:] in ([("SendSSHPublicKey", None)], [("SendSSHPublicKey", "after_expiry")])
    assert Path(story["workdir"]).parent == scratch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # nothing in the current folder
