"""eice-access: the domain (requests, approvals, grants, audit) and its AWS adapters.

Nothing in this package imports Slack code; `bot/` calls in, never the reverse.
"""
