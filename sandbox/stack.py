"""The whole sandbox in one object: AWS (moto + EICE endpoints + OpenTunnel + SendSSHPublicKey
+ CloudTrail), an SSH server per instance, the Slack Web API stand-in, a seeded estate and
an `eice.toml` to match. Used by `eice sandbox`, `eice demo`, the benchmarks and tests.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.aws.account import bot_client
from sandbox.aws.eice import TunnelServer
from sandbox.aws.instance_connect import InstanceConnectService
from sandbox.aws.seed import Estate, seed_estate
from sandbox.aws.server import AwsSandbox
from sandbox.aws.ssh_server import InstanceSshServers
from sandbox.slack.server import SlackSandbox

SLACK_TOKEN = "xoxb-sandbox"
APPROVALS_CHANNEL = "C0APPROVALS"
AUDIT_CHANNEL = "C0AUDIT"


def sandbox_config(account_id: str) -> str:
    """The sandbox's eice.toml: a prod rule needing two approvals, an auto-approved dev rule."""
    return f"""# eice.toml written by the sandbox
[aws]
regions = ["us-east-1"]

[defaults]
approvers = ["U0BOB", "U0CAROL", "S0ONCALL"]
approvals_required = 1
admins = ["U0ADMIN"]
approvals_channel = "{APPROVALS_CHANNEL}"
audit_channel = "{AUDIT_CHANNEL}"
max_duration = "4h"
approval_timeout = "30m"
max_tunnel_overshoot = "5m"

[[rules]]
name = "prod"
match = {{ tags = {{ env = "prod" }} }}
approvals_required = 2

[[rules]]
name = "dev"
match = {{ tags = {{ env = "dev" }} }}
auto_approve = true

[principals]
U0ALICE = "arn:aws:iam::{account_id}:role/eice/alice"
U0BOB = "arn:aws:iam::{account_id}:role/eice/bob"
U0CAROL = "arn:aws:iam::{account_id}:role/eice/carol"
principal_template = "arn:aws:iam::{{account}}:role/eice/{{email_local}}"

[break_glass]
enabled = true
max_duration = "1h"
channel = "{AUDIT_CHANNEL}"
"""


@dataclass
class SandboxStack:
    """Start with `start()`; everything listens on 127.0.0.1 and stops with `stop()`."""

    workdir: Path
    tls: bool = False
    cloudtrail_delay_s: float = 0.0
    signing_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    aws: AwsSandbox = field(init=False)
    tunnels: TunnelServer = field(init=False)
    instance_connect: InstanceConnectService = field(init=False)
    ssh: InstanceSshServers = field(init=False)
    slack: SlackSandbox = field(init=False)
    estate: Estate = field(init=False)
    config_path: Path = field(init=False)

    def start(self) -> SandboxStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.aws = AwsSandbox(cloudtrail_delay_s=self.cloudtrail_delay_s).start()
        self.tunnels = TunnelServer(self.aws, tls_dir=self.workdir / "tls" if self.tls else None).start()
        self.instance_connect = InstanceConnectService(self.aws).install()
        self.ssh = InstanceSshServers(self.aws, self.instance_connect.keys).start()
        self.estate = seed_estate(self.aws)
        self.ssh.serve_running()
        self.slack = SlackSandbox(token=SLACK_TOKEN).start()
        self.config_path = self.workdir / "eice.toml"
        self.config_path.write_text(sandbox_config(self.estate.account_id))
        return self

    def stop(self) -> None:
        for part in ("slack", "ssh", "tunnels", "aws"):
            thing = getattr(self, part, None)
            if thing is not None:
                with contextlib.suppress(Exception):  # best effort on the way out
                    thing.stop()

    def __enter__(self) -> SandboxStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def bot_env(self, database_url: str) -> dict[str, str]:
        """Environment for `eice serve`: AWS, Slack and the config all pointing here."""
        env = dict(self.aws.env())
        env.update(
            {
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "SLACK_BOT_TOKEN": SLACK_TOKEN,
                "SLACK_SIGNING_SECRET": self.signing_secret,
                "EICE_SLACK_API_URL": self.slack.url + "/api/",
                "EICE_DATABASE_URL": database_url,
                "EICE_CONFIG": str(self.config_path),
                "EICE_INBOX_DIR": str(Path(self.config_path).parent / "inbox"),  # not ~/.local/state
                "EICE_TUNNEL_SCHEME": self.tunnels.scheme,
            }
        )
        if self.tls and self.tunnels.ca_path:
            env["AWS_CA_BUNDLE"] = str(self.tunnels.ca_path)
        return env

    def user_env(self, person: str, duration_s: int = 3600) -> dict[str, str]:
        """Environment for `eice ssh` as `person`: their role's temporary credentials."""
        sts = bot_client("sts", self.aws.url, self.aws.region)
        creds = sts.assume_role(
            RoleArn=self.estate.role_arns[person],
            RoleSessionName=person,
            DurationSeconds=duration_s,
        )["Credentials"]
        env = self.bot_env("")
        env.pop("EICE_DATABASE_URL")
        env.update(
            {
                "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                "AWS_SESSION_TOKEN": creds["SessionToken"],
            }
        )
        for secret in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
            env.pop(secret, None)
        return env

    def describe(self) -> dict[str, Any]:
        return {
            "aws_url": self.aws.url,
            "slack_url": self.slack.url,
            "tunnel": f"{self.tunnels.scheme}://127.0.0.1:{self.tunnels.port}",
            "config": str(self.config_path),
            "estate": self.estate.to_dict(),
        }
