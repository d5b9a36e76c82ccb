"""Which IAM principal a Slack user acts as."""
