"""The layers stay apart: access/ never imports Slack code; access/ and bot/ never import sandbox/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Only the CLI commands that exist to run the stand-ins may reach into sandbox/.
SANDBOX_USERS = {
    "access/cli/sandbox.py",
    "access/cli/bench.py",
    "access/cli/chaos.py",
    "access/cli/demo.py",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_access_never_imports_slack() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "access").rglob("*.py")
        if any(n.split(".")[0] in ("slack_bolt", "slack_sdk") for n in imports(p))
    ]
    assert offenders == []


def test_only_the_cli_entry_points_reach_into_bot() -> None:
    # `eice serve` starts the Slack layer; the domain itself never calls up into it.
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "access").rglob("*.py")
        if "cli" not in p.parts and any(n.split(".")[0] == "bot" for n in imports(p))
    ]
    assert offenders == []


def test_runtime_code_never_imports_the_sandbox() -> None:
    offenders = []
    for package in ("access", "bot"):
        for p in (ROOT / package).rglob("*.py"):
            rel = str(p.relative_to(ROOT))
            if rel in SANDBOX_USERS or "/bench" in rel or rel.endswith("bench.py") or "/chaos/" in rel:
                continue
            top_level = {n.split(".")[0] for n in imports(p)}
            if "sandbox" in top_level:
                offenders.append(rel)
    assert offenders == []
