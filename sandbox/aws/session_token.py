"""STS GetSessionToken for IAM users, answered by the sandbox so the session maps back to its user."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from moto.iam.models import iam_backends

from sandbox.aws import identity
from sandbox.aws.request_info import Headers


def get_session_token(key: str, params: dict[str, list[str]]) -> tuple[int, Headers, bytes] | None:
    """Session credentials for the IAM user behind ``key``, or None to let moto answer.

    Args:
        key: the caller's access key id.
        params: the query and form params (``DurationSeconds`` is honoured).
    """
    found = identity.lookup_access_key(key)
    if found is None or found[0].kind != "IAMUser":
        return None
    principal = found[0]
    temp = iam_backends[principal.account_id]["aws"].create_temp_access_key()
    token = secrets.token_urlsafe(96)
    identity.issue_session_token(principal, temp.access_key_id, temp.secret_access_key, token)
    duration = int((params.get("DurationSeconds") or ["43200"])[0])
    expiration = (datetime.now(UTC) + timedelta(seconds=duration)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = (
        '<GetSessionTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<GetSessionTokenResult><Credentials>"
        f"<SessionToken>{token}</SessionToken>"
        f"<SecretAccessKey>{temp.secret_access_key}</SecretAccessKey>"
        f"<Expiration>{expiration}</Expiration>"
        f"<AccessKeyId>{temp.access_key_id}</AccessKeyId>"
        "</Credentials></GetSessionTokenResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</GetSessionTokenResponse>"
    ).encode()
    return 200, [("Content-Type", "text/xml")], body
