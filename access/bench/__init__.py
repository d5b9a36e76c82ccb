"""Benchmarks at scale (`eice bench revoke`, `catch-up`, `lifecycle`) against the sandbox."""
