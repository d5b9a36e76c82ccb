"""Notifications written with the state change they announce, delivered by the Slack layer."""
