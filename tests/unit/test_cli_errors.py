"""The `eice` commands that open the bot's database, or read the environment, fail with one
line and change nothing when either is wrong; output cut short by a pipe is no error."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DATABASE_COMMANDS = [
    ["tick"],
    ["audit"],
    ["audit", "verify"],
    ["close-grant", "g-1", "--admin", "U0ADMIN", "--reason", "test"],
]


def eice(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EICE_", "SLACK_"))}
    return subprocess.run(
        [sys.executable, "-m", "access.cli.main", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def aws_at(url: str) -> dict[str, str]:
    """AWS settings that send every call to `url`, once, with made-up keys."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_database_file_that_is_not_there_is_not_created(command: list[str], tmp_path: Path) -> None:
    done = eice(*command, env={}, cwd=tmp_path)  # the default: sqlite:///eice.sqlite, here
    assert done.returncode == 2
    assert "eice.sqlite does not exist: run `eice migrate` first" in one_line(done)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("not-a-url", "cannot use database <unparseable database URL>: Could not parse"),
        (
            "postgresql://postgres:s3cret@127.0.0.1:1/x",
            "cannot use database postgresql://postgres:***@127.0.0.1:1/x: connection failed",
        ),
    ],
)
@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_database_that_cannot_be_used_is_one_line(
    command: list[str], url: str, said: str, tmp_path: Path
) -> None:
    done = eice(*command, env={"EICE_DATABASE_URL": url}, cwd=tmp_path)
    line = one_line(done)
    assert done.returncode == 2 and said in line and "s3cret" not in line


def test_an_unmigrated_database_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "old.sqlite").touch()  # there, but never migrated
    done = eice("audit", env={"EICE_DATABASE_URL": f"sqlite:///{tmp_path / 'old.sqlite'}"}, cwd=tmp_path)
    assert done.returncode == 2
    assert "is at revision none, not " in one_line(done)


@pytest.mark.parametrize(
    ("value", "level"), [("warn", "WARNING"), ("FATAL", "CRITICAL"), ("10", "DEBUG"), ("info", "INFO")]
)
def test_log_levels_logging_knows_are_taken(value: str, level: str) -> None:
    from access.settings import Settings

    assert Settings(eice_log_level=value).eice_log_level == level


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("EICE_COMMAND_WORKERS", "abc", "environment: EICE_COMMAND_WORKERS: Input should be a valid integer"),
        ("EICE_LOG_LEVEL", "verbose", "EICE_LOG_LEVEL: 'verbose' is not one of NOTSET, DEBUG, INFO"),
        ("EICE_REAPER_INTERVAL_S", "0", "EICE_REAPER_INTERVAL_S: Input should be greater than 0"),
    ],
)
def test_a_bad_environment_variable_is_named(variable: str, value: str, said: str, tmp_path: Path) -> None:
    done = eice("tick", env={variable: value}, cwd=tmp_path)
    assert done.returncode == 2 and said in one_line(done)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def migrated(tmp_path: Path) -> dict[str, str]:
    env = {"EICE_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite'}"}
    assert eice("migrate", env=env, cwd=tmp_path).returncode == 0
    return env


def test_a_tick_that_left_work_undone_says_so_and_exits_1(migrated: dict[str, str], tmp_path: Path) -> None:
    dead_aws = aws_at("http://127.0.0.1:9")  # nothing listens: every AWS call fails
    done = eice("tick", env={**migrated, **dead_aws}, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("eice tick: left for the next tick: CloudTrail us-east-1/")
    assert '"failed"' in done.stdout  # the summary is printed all the same


def test_output_cut_short_by_a_pipe_is_no_error(migrated: dict[str, str], tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # like `| head` that has read all it wanted
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EICE_", "SLACK_"))}
    done = subprocess.run(
        [sys.executable, "-m", "access.cli.main", "audit", "verify"],
        env={**clean, **migrated},
        cwd=tmp_path,
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(writer)
    assert done.returncode == 141 and done.stderr == ""


def test_migrate_prints_what_it_did_on_stdout(tmp_path: Path) -> None:
    env = {"EICE_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite'}"}
    done = eice("migrate", env=env, cwd=tmp_path)
    assert done.returncode == 0
    assert "is at revision" in done.stdout and "installation ID" in done.stdout  # ID=$(eice migrate)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["demo", "--html", "/nonexistent/folder/d.html"], "--html /nonexistent/folder/d.html: no such"),
        (["sandbox", "--workdir", "/proc/no/such"], "--workdir /proc/no/such:"),
        (["bench", "audit", "--rows", "-1"], "--rows, --grants and --queries must be at least 1"),
        (["bench", "ack", "--n", "0"], "--n, --concurrency and --rounds must be at least 1"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(args: list[str], said: str, tmp_path: Path) -> None:
    done = eice(*args, env={}, cwd=tmp_path)
    assert done.returncode == 2
    assert said in one_line(done)


class _HtmlPage(BaseHTTPRequestHandler):
    """What answers in AWS's place when something in between fails: an HTML error page."""

    def do_POST(self) -> None:
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("command", [["doctor", "web-1"], ["tunnel", "web-1", "--local-port", "0"]])
def test_an_endpoint_that_answers_html_is_one_line(command: list[str], tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = eice(*command, env=aws_at(f"http://127.0.0.1:{server.server_port}"), cwd=tmp_path)
    finally:
        server.shutdown()
    assert done.returncode == 1
    line = one_line(done)
    assert "Unable to parse response" in line, line
