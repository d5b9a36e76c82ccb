"""What a pre-flight found: one `Check` per consideration, a verdict, and a text table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warning", "failure"]
STATUSES: tuple[Status, ...] = ("ok", "warning", "failure")
REPORT_VERSION = 1


@dataclass(frozen=True)
class Check:
    """One consideration: its status, a one-line evidence, and how to fix it."""

    name: str
    status: Status
    evidence: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "evidence": self.evidence,
            "fix": self.fix,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Check:
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown check status {status!r}")
        return cls(
            name=str(data["name"]),
            status=status,
            evidence=str(data["evidence"]),
            fix=data.get("fix"),
        )


def ok(name: str, evidence: str) -> Check:
    return Check(name, "ok", evidence)


def warning(name: str, evidence: str, fix: str | None = None) -> Check:
    return Check(name, "warning", evidence, fix)


def failure(name: str, evidence: str, fix: str | None = None) -> Check:
    return Check(name, "failure", evidence, fix)


@dataclass(frozen=True)
class PreflightReport:
    """Every check run for one instance, port and OS user (stored on `AccessRequest.preflight`)."""

    instance_ref: str
    port: int
    os_user: str
    checks: tuple[Check, ...]
    instance_id: str | None = None
    region: str | None = None
    endpoint_id: str | None = None
    principal_arn: str | None = None
    checked_at: str | None = None  # ISO 8601, UTC
    elapsed_ms: int | None = field(default=None, compare=False)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failure"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == "warning"]

    @property
    def status(self) -> Status:
        if self.failures:
            return "failure"
        return "warning" if self.warnings else "ok"

    @property
    def verdict(self) -> str:
        """`reachable`, `warnings`, or `will fail: <evidence of the first failure>`."""
        if self.failures:
            return f"will fail: {self.failures[0].evidence}"
        return "warnings" if self.warnings else "reachable"

    def check(self, name: str) -> Check:
        """The check called `name` (KeyError if it was not run)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "instance_ref": self.instance_ref,
            "instance_id": self.instance_id,
            "region": self.region,
            "endpoint_id": self.endpoint_id,
            "port": self.port,
            "os_user": self.os_user,
            "principal_arn": self.principal_arn,
            "status": self.status,
            "verdict": self.verdict,
            "checked_at": self.checked_at,
            "elapsed_ms": self.elapsed_ms,
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreflightReport:
        """The report `to_dict` produced (status and verdict are recomputed from the checks)."""
        return cls(
            instance_ref=str(data["instance_ref"]),
            port=int(data["port"]),
            os_user=str(data["os_user"]),
            checks=tuple(Check.from_dict(c) for c in data.get("checks", [])),
            instance_id=data.get("instance_id"),
            region=data.get("region"),
            endpoint_id=data.get("endpoint_id"),
            principal_arn=data.get("principal_arn"),
            checked_at=data.get("checked_at"),
            elapsed_ms=data.get("elapsed_ms"),
        )


STATUS_LABEL = {"ok": "OK", "warning": "WARN", "failure": "FAIL"}


def render_table(report: PreflightReport) -> str:
    """Plain text: a header, then one line per check (status, name, evidence, fix)."""
    target = report.instance_id or report.instance_ref
    where = f" in {report.region}" if report.region else ""
    via = f" via {report.endpoint_id}" if report.endpoint_id else ""
    lines = [f"{target}{where}{via}, port {report.port}, user {report.os_user}"]
    width = max((len(c.name) for c in report.checks), default=0)
    for c in report.checks:
        line = f"{STATUS_LABEL[c.status]:<4}  {c.name:<{width}}  {c.evidence}"
        if c.fix:
            line += f"\n      {'':<{width}}  fix: {c.fix}"
        lines.append(line)
    lines.append(f"verdict: {report.verdict}")
    return "\n".join(lines)
