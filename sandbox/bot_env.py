"""The environment of a bot process pointed at the local AWS and Slack stand-ins."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sandbox.aws.server import AwsSandbox
from sandbox.slack.server import DEFAULT_TOKEN, SlackSandbox

OWN_PREFIXES = ("AWS_", "SLACK_", "EICE_")


def bot_env(
    aws: AwsSandbox,
    slack: SlackSandbox,
    *,
    db_url: str,
    config: Path | str,
    signing_secret: str,
    base: Mapping[str, str] | None = None,
    **settings: str,
) -> dict[str, str]:
    """`base` (default: this process's environment) without any AWS, Slack or eice settings,
    plus what makes a bot talk only to these stand-ins. Acked requests are kept in `inbox`
    beside `config` (not in the user's state folder).

    Args:
        aws: the AWS stand-in (endpoint, region and the bot's keys come from it).
        slack: the Slack stand-in (its Web API URL).
        db_url: the bot's database.
        config: the bot's `eice.toml`.
        signing_secret: the Slack signing secret the driver signs with.
        base: the environment to start from.
        settings: further variables, e.g. `EICE_REAPER_INTERVAL_S="0.5"`.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith(OWN_PREFIXES)}
    env.update(aws.env())
    env.update(
        AWS_CONFIG_FILE="/dev/null",  # never a profile or credentials file of this machine
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        SLACK_BOT_TOKEN=DEFAULT_TOKEN,
        SLACK_SIGNING_SECRET=signing_secret,
        EICE_SLACK_API_URL=slack.url + "/api/",
        EICE_DATABASE_URL=db_url,
        EICE_CONFIG=str(config),
        EICE_INBOX_DIR=str(Path(config).parent / "inbox"),
    )
    env.update(settings)
    return env
