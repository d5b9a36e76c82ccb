"""The sandbox's AWS account and the bot's access key pair in it."""

DEFAULT_ACCOUNT_ID = "123456789012"
BOT_ACCESS_KEY_ID = "AKIAEICEBOTSANDBOX01"
BOT_SECRET_ACCESS_KEY = "sandbox-bot-secret-not-a-real-key"
