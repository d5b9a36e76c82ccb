"""Run each test package in its own pytest process, two at a time.

moto keeps its state per process, and several packages seed (or reset) their own AWS
sandbox; one process per package keeps them apart. Prints each package's outcome and
one closing line, "N passed, N failed", and exits non-zero if anything failed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def packages() -> list[Path]:
    found = sorted(p for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py")))
    # Longest first so the two lanes finish together.
    slow_first = ["chaos", "audit", "core", "bot", "bench", "tunnel", "preflight"]
    return sorted(found, key=lambda p: slow_first.index(p.name) if p.name in slow_first else 99)


def run(package: Path, extra: list[str], out: Path) -> tuple[str, int, int, int, int, float, str]:
    junit = out / f"{package.name}.xml"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            str(package),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    tests = failures = errors = skipped = 0
    if junit.exists():
        suite = ET.parse(junit).getroot()
        for s in suite.iter("testsuite"):
            tests += int(s.get("tests", 0))
            failures += int(s.get("failures", 0))
            errors += int(s.get("errors", 0))
            skipped += int(s.get("skipped", 0))
    if proc.returncode not in (0, 5) and failures + errors == 0:
        errors += 1  # collection error, crash, or a hang killed by pytest
    return (
        package.name,
        tests,
        failures + errors,
        skipped,
        proc.returncode,
        elapsed,
        proc.stdout + proc.stderr,
    )


def main() -> int:
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: run(p, extra, Path(tmp)), packages()))
    passed = failed = skipped = 0
    for name, tests, bad, skip, code, elapsed, output in results:
        passed += tests - bad - skip
        failed += bad
        skipped += skip
        state = "ok" if bad == 0 and code in (0, 5) else "FAILED"
        print(
            f"tests/{name}: {tests - bad - skip} passed, {bad} failed, {skip} skipped "
            f"in {elapsed:.0f}s [{state}]"
        )
        if state != "ok":
            print(output[-6000:])
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
