"""Helpers for the IAM evaluator's table tests: one Allow statement, one decision."""

from __future__ import annotations

from typing import Any

from sandbox.aws.iam_eval import evaluate

EP = "arn:aws:ec2:us-east-1:123456789012:instance-connect-endpoint/eice-0abc"
OPEN = "ec2-instance-connect:OpenTunnel"


def allow(condition: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": OPEN, "Resource": EP}
    if condition is not None:
        statement["Condition"] = condition
    statement.update(extra)
    return {"Version": "2012-10-17", "Statement": [statement]}


def decide(policy: dict[str, Any], context: dict[str, Any] | None = None, **kw: Any) -> bool:
    kw.setdefault("action", OPEN)
    kw.setdefault("resource", EP)
    return evaluate([policy], context=context or {}, **kw).allowed
