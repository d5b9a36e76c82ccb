"""The grant's inline policy on an IAM role or user: put, delete, list, read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from access.aws.calls import AwsClients, error_code, with_retries
from access.aws.lookups import memoised
from access.config.model import PRINCIPAL_ARN
from access.errors import InvalidInput
from access.grants.policy import is_own_policy_name


@dataclass(frozen=True)
class PrincipalRef:
    arn: str
    kind: str  # "role" | "user"
    name: str
    account_id: str


def parse_principal(arn: str) -> PrincipalRef:
    """Split an IAM role or user ARN (paths allowed) into its kind and name."""
    match = PRINCIPAL_ARN.match(arn)
    if not match:
        raise InvalidInput(f"{arn[:80]!r} is not an IAM role or user ARN")
    account = arn.split(":")[4]
    return PrincipalRef(
        arn=arn, kind=match.group(1), name=match.group(2).rsplit("/", 1)[-1], account_id=account
    )


class IamPolicies:
    """Inline-policy operations; every call is idempotent and retried on throttling."""

    def __init__(self, clients: AwsClients, *, attempts: int = 4) -> None:
        self.clients = clients
        self.attempts = attempts

    def _iam(self) -> Any:
        return self.clients.iam()

    def put(self, principal_arn: str, name: str, document: dict[str, Any]) -> str:
        """PutRolePolicy/PutUserPolicy; returns the AWS request ID."""
        p = parse_principal(principal_arn)
        body = json.dumps(document, separators=(",", ":"))
        iam = self._iam()
        if p.kind == "role":
            put, key = iam.put_role_policy, "RoleName"
        else:
            put, key = iam.put_user_policy, "UserName"
        response = with_retries(
            lambda: put(**{key: p.name, "PolicyName": name, "PolicyDocument": body}),
            attempts=self.attempts,
        )
        return str(response.get("ResponseMetadata", {}).get("RequestId", ""))

    def delete(self, principal_arn: str, name: str) -> str | None:
        """DeleteRolePolicy/DeleteUserPolicy; NoSuchEntity counts as done (returns None)."""
        p = parse_principal(principal_arn)
        iam = self._iam()
        if p.kind == "role":
            delete, key = iam.delete_role_policy, "RoleName"
        else:
            delete, key = iam.delete_user_policy, "UserName"
        try:
            response = with_retries(
                lambda: delete(**{key: p.name, "PolicyName": name}), attempts=self.attempts
            )
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise
        return str(response.get("ResponseMetadata", {}).get("RequestId", ""))

    def list_names(self, principal_arn: str) -> list[str]:
        """Names of every inline policy on the principal (all pages)."""
        p = parse_principal(principal_arn)
        iam = self._iam()
        names: list[str] = []
        marker: str | None = None
        while True:
            args: dict[str, Any] = {"RoleName" if p.kind == "role" else "UserName": p.name}
            if marker:
                args["Marker"] = marker
            lister = iam.list_role_policies if p.kind == "role" else iam.list_user_policies
            page = with_retries(lambda a=args, f=lister: f(**a), attempts=self.attempts)  # type: ignore[misc]
            names += page.get("PolicyNames", [])
            if not page.get("IsTruncated"):
                return names
            marker = page.get("Marker")

    def list_grant_names(self, principal_arn: str, deployment: str = "") -> list[str]:
        """The inline policies on `principal_arn` that are `deployment`'s grant policies."""
        return [n for n in self.list_names(principal_arn) if is_own_policy_name(n, deployment)]

    def get(self, principal_arn: str, name: str) -> dict[str, Any] | None:
        """The policy document, or None when there is no such policy."""
        p = parse_principal(principal_arn)
        iam = self._iam()
        try:
            if p.kind == "role":
                response = with_retries(lambda: iam.get_role_policy(RoleName=p.name, PolicyName=name))
            else:
                response = with_retries(lambda: iam.get_user_policy(UserName=p.name, PolicyName=name))
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise
        document = response["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(unquote(document))
        return dict(document)

    def exists(self, principal_arn: str) -> bool:
        """Whether the role or user exists."""
        return memoised(("principal", id(self.clients), principal_arn), lambda: self._exists(principal_arn))

    def _exists(self, principal_arn: str) -> bool:
        p = parse_principal(principal_arn)
        iam = self._iam()
        try:
            if p.kind == "role":
                with_retries(lambda: iam.get_role(RoleName=p.name))
            else:
                with_retries(lambda: iam.get_user(UserName=p.name))
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                return False
            raise
        return True

    def inline_size_used(self, principal_arn: str, *, excluding: str | None = None) -> int:
        """Characters (whitespace not counted) used by the principal's inline policies."""
        total = 0
        for name in self.list_names(principal_arn):
            if name == excluding:
                continue
            document = self.get(principal_arn, name)
            if document is not None:
                total += len(json.dumps(document, separators=(",", ":")))
        return total
