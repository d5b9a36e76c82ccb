"""The sandbox's AWS account and the bot's access key pair in it."""

from typing import Any

DEFAULT_ACCOUNT_ID = "123456789012"
BOT_ACCESS_KEY_ID = "AKIAEICEBOTSANDBOX01"
BOT_SECRET_ACCESS_KEY = "sandbox-bot-secret-not-a-real-key"


def bot_session(region: str = "us-east-1") -> Any:
    """A boto3 session that signs as the bot with the sandbox's keys (never this machine's)."""
    import boto3

    return boto3.Session(
        aws_access_key_id=BOT_ACCESS_KEY_ID, aws_secret_access_key=BOT_SECRET_ACCESS_KEY, region_name=region
    )


def bot_client(service: str, url: str, region: str = "us-east-1") -> Any:
    """A boto3 client of `service` at the sandbox at `url`, signing as the bot."""
    return bot_session(region).client(service, endpoint_url=url)
