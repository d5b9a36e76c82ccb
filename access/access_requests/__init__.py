"""Access requests and their approvals (N of M)."""
