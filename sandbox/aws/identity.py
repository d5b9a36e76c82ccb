"""Who is calling: principals behind the access keys moto issued, and their policies.

moto's backends live in this process, so this module reads IAM and STS state directly.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

DEFAULT_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class Principal:
    """An IAM user, a role session or the root user, as a request's access key names it."""

    arn: str
    account_id: str
    kind: str  # "IAMUser" | "AssumedRole" | "Root"
    name: str  # user name or role name
    role_arn: str | None
    session_name: str | None
    access_key_id: str
    principal_id: str


@dataclass(frozen=True)
class _UserSession:
    principal: Principal
    secret_access_key: str
    session_token: str


# GetSessionToken credentials the sandbox issued (moto answers fixed example keys instead).
_user_sessions: dict[str, _UserSession] = {}
_sessions_lock = threading.Lock()


def _iam_backends() -> list[Any]:
    return [backend for per in list(iam_backends.values()) for backend in list(per.values())]


def _sts_backends() -> list[Any]:
    return [backend for per in list(sts_backends.values()) for backend in list(per.values())]


def _user_principal(user: Any, access_key_id: str) -> Principal:
    return Principal(
        arn=user.arn,
        account_id=user.account_id,
        kind="IAMUser",
        name=user.name,
        role_arn=None,
        session_name=None,
        access_key_id=access_key_id,
        principal_id=user.id,
    )


def _role_id(role_arn: str) -> str | None:
    for backend in _iam_backends():
        for role in backend.roles.values():
            if role.arn == role_arn:
                return str(role.id)
    return None


def lookup_access_key(access_key_id: str) -> tuple[Principal, str, str | None] | None:
    """(principal, secret_access_key, session_token) for keys moto issued.

    Covers IAM CreateAccessKey keys and STS AssumeRole / GetSessionToken credentials.
    """
    with _sessions_lock:
        session = _user_sessions.get(access_key_id)
    if session is not None:
        return session.principal, session.secret_access_key, session.session_token
    for backend in _sts_backends():
        for assumed in list(backend.assumed_roles):
            if assumed.access_key_id != access_key_id:
                continue
            role_name = assumed.role_arn.split("/")[-1]
            principal = Principal(
                arn=assumed.arn,
                account_id=assumed.account_id,
                kind="AssumedRole",
                name=role_name,
                role_arn=assumed.role_arn,
                session_name=assumed.session_name,
                access_key_id=access_key_id,
                principal_id=f"{_role_id(assumed.role_arn) or 'AROA'}:{assumed.session_name}",
            )
            return principal, assumed.secret_access_key, assumed.session_token
    for backend in _iam_backends():
        for user in list(backend.users.values()):
            for key in user.access_keys:
                if key.access_key_id == access_key_id:
                    return _user_principal(user, access_key_id), key.secret_access_key, None
    return None


def principal_for_key(access_key_id: str, account_id: str = DEFAULT_ACCOUNT_ID) -> Principal:
    """The principal behind a key.

    Keys moto never issued (the bot's dummy key) become an IAM user named after the key.
    """
    found = lookup_access_key(access_key_id)
    if found is not None:
        return found[0]
    return Principal(
        arn=f"arn:aws:iam::{account_id}:user/{access_key_id}",
        account_id=account_id,
        kind="IAMUser",
        name=access_key_id,
        role_arn=None,
        session_name=None,
        access_key_id=access_key_id,
        principal_id=f"AIDA{access_key_id[4:]}" if access_key_id else "AIDAUNKNOWN",
    )


def issue_session_token(principal: Principal, access_key_id: str, secret: str, token: str) -> None:
    """Remember GetSessionToken credentials so they resolve to the IAM user who asked."""
    session_principal = Principal(
        arn=principal.arn,
        account_id=principal.account_id,
        kind=principal.kind,
        name=principal.name,
        role_arn=principal.role_arn,
        session_name=principal.session_name,
        access_key_id=access_key_id,
        principal_id=principal.principal_id,
    )
    with _sessions_lock:
        _user_sessions[access_key_id] = _UserSession(session_principal, secret, token)


def forget_sessions() -> None:
    with _sessions_lock:
        _user_sessions.clear()


def _document(raw: str | dict) -> dict:
    if isinstance(raw, dict):
        return raw
    text = raw if raw.lstrip().startswith("{") else unquote(raw)
    return dict(json.loads(text))


def _managed_documents(managed: dict[str, Any]) -> list[dict]:
    documents = []
    for policy in managed.values():
        for version in policy.versions:
            if version.version_id == policy.default_version_id:
                documents.append(_document(version.document))
    return documents


def _backend_for(account_id: str) -> Any:
    return iam_backends[account_id]["aws"]


def identity_policies(principal: Principal) -> list[dict]:
    """Every identity-based policy document that applies to the principal.

    Inline + attached managed policies of the user (and its groups), or of the role
    behind an assumed-role session.
    """
    backend = _backend_for(principal.account_id)
    documents: list[dict] = []
    if principal.kind == "AssumedRole":
        role = next((r for r in backend.roles.values() if r.arn == principal.role_arn), None)
        if role is None:
            return []
        documents.extend(_document(d) for d in role.policies.values())
        documents.extend(_managed_documents(role.managed_policies))
        return documents
    if principal.kind == "IAMUser":
        user = backend.users.get(principal.name)
        if user is None:
            return []
        documents.extend(_document(d) for d in user.policies.values())
        documents.extend(_managed_documents(user.managed_policies))
        for group in backend.groups.values():
            if user in group.users:
                documents.extend(_document(d) for d in group.policies.values())
                documents.extend(_managed_documents(group.managed_policies))
    return documents


def cloudtrail_user_identity(principal: Principal) -> dict:
    """The CloudTrail `userIdentity` object for the principal.

    type, principalId, arn, accountId, accessKeyId, and sessionContext.sessionIssuer
    for AssumedRole.
    """
    identity: dict[str, Any] = {
        "type": principal.kind,
        "principalId": principal.principal_id,
        "arn": principal.arn,
        "accountId": principal.account_id,
        "accessKeyId": principal.access_key_id,
    }
    if principal.kind == "IAMUser":
        identity["userName"] = principal.name
    elif principal.kind == "AssumedRole":
        identity["sessionContext"] = {
            "sessionIssuer": {
                "type": "Role",
                "principalId": principal.principal_id.split(":")[0],
                "arn": principal.role_arn,
                "accountId": principal.account_id,
                "userName": principal.name,
            },
            "attributes": {
                "creationDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "mfaAuthenticated": "false",
            },
        }
    return identity
