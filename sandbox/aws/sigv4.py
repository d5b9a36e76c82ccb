"""Verifying SigV4 the way AWS does, by recomputing the signature with botocore's own signer."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sandbox.aws.identity import Principal, lookup_access_key

MAX_PRESIGN_EXPIRES_S = 60
CLOCK_SKEW_S = 300  # AWS tolerates five minutes of skew on X-Amz-Date
_AUTH_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_TOKEN = "X-Amz-Security-Token"
_AUTH_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$"
)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: HTTP status, EICE-style error code and message."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, str]:
        return {"ErrorCode": self.code, "Message": self.message}


@dataclass(frozen=True)
class _Scope:
    access_key: str
    date: str
    region: str
    service: str


def _parse_scope(credential: str) -> _Scope | None:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        return None
    return _Scope(*parts[:4])


def _signing_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _credentials_for(scope: _Scope, token: str | None) -> tuple[Principal, Credentials] | Refusal:
    found = lookup_access_key(scope.access_key)
    if found is None:
        return Refusal(403, "InvalidSignature", "The security token included in the request is invalid.")
    principal, secret, session_token = found
    if session_token is not None and token != session_token:
        return Refusal(403, "InvalidSignature", "The security token included in the request is invalid.")
    return principal, Credentials(scope.access_key, secret, session_token)


def verify_presigned_url(
    *,
    path_and_query: str,
    host: str,
    service: str,
    region: str | None = None,
    now: datetime | None = None,
) -> tuple[Principal, str] | Refusal:
    """Check a presigned GET; returns (principal, region signed for) or a Refusal.

    Args:
        path_and_query: the request target as received (`/openTunnel?...`).
        host: the Host header as sent.
        service: the service name the scope must name.
        region: when given, the region the scope must name.
        now: the verification time; the wall clock when None.
    """
    parts = urlsplit(path_and_query)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("X-Amz-") and key in seen:
            return Refusal(400, "InvalidParameter", f"Duplicate query parameter: {key}")
        seen[key] = value
    missing = [name for name in _AUTH_PARAMS if not seen.get(name)]
    if missing:
        return Refusal(400, "InvalidParameter", f"Missing authentication parameter: {missing[0]}")
    if seen["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        return Refusal(400, "InvalidParameter", "Unsupported X-Amz-Algorithm.")
    if seen["X-Amz-SignedHeaders"] != "host":
        return Refusal(400, "InvalidParameter", "X-Amz-SignedHeaders must be exactly 'host'.")
    scope = _parse_scope(seen["X-Amz-Credential"])
    signed_at = _signing_time(seen["X-Amz-Date"])
    if scope is None or signed_at is None or scope.date != seen["X-Amz-Date"][:8]:
        return Refusal(400, "InvalidParameter", "Malformed X-Amz-Credential or X-Amz-Date.")
    if scope.service != service:
        return Refusal(403, "InvalidSignature", f"Credential should be scoped to service '{service}'.")
    if region is not None and scope.region != region:
        return Refusal(
            403,
            "InvalidSignature",
            f"Credential should be scoped to a valid region, not '{scope.region}'.",
        )
    try:
        expires = int(seen["X-Amz-Expires"])
    except ValueError:
        return Refusal(400, "InvalidParameter", "X-Amz-Expires must be a number of seconds.")
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES_S:
        return Refusal(400, "InvalidParameter", f"X-Amz-Expires must be 1..{MAX_PRESIGN_EXPIRES_S}.")
    at = now or datetime.now(UTC)
    if at > signed_at + timedelta(seconds=expires):
        return Refusal(403, "ExpiredToken", "The presigned URL has expired.")
    if signed_at - at > timedelta(seconds=CLOCK_SKEW_S):
        return Refusal(403, "InvalidSignature", "Signature not yet current (X-Amz-Date is in the future).")
    found = _credentials_for(scope, seen.get(_TOKEN))
    if isinstance(found, Refusal):
        return found
    principal, credentials = found

    request = AWSRequest(method="GET", url=f"https://{host}{parts.path}", headers={"host": host})
    request.params = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]  # type: ignore[assignment]  # botocore takes pairs too
    request.context["timestamp"] = seen["X-Amz-Date"]
    signer = SigV4QueryAuth(credentials, service, scope.region, expires=expires)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, seen["X-Amz-Signature"]):
        return Refusal(
            403,
            "InvalidSignature",
            "The request signature we calculated does not match the signature you provided.",
        )
    return principal, scope.region


def verify_authorization_header(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    service: str,
    now: datetime | None = None,
) -> tuple[Principal, str] | Refusal:
    """Check a header-signed request (`Authorization: AWS4-HMAC-SHA256 ...`).

    Args:
        method, url, headers, body: the request as received (url with scheme and host).
        service: the service name the scope must name.
        now: the verification time; the wall clock when None.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTH_HEADER.match(lower.get("authorization", "").strip())
    if match is None:
        return Refusal(400, "MissingAuthenticationToken", "Missing or malformed Authorization header.")
    credential, signed_headers, signature = match.groups()
    scope = _parse_scope(credential)
    stamp = lower.get("x-amz-date", "")
    signed_at = _signing_time(stamp)
    if scope is None or signed_at is None or scope.date != stamp[:8]:
        return Refusal(400, "IncompleteSignature", "Malformed credential scope or X-Amz-Date.")
    if scope.service != service:
        return Refusal(403, "InvalidSignatureException", "Credential scoped to the wrong service.")
    at = now or datetime.now(UTC)
    if abs((at - signed_at).total_seconds()) > CLOCK_SKEW_S:
        return Refusal(403, "InvalidSignatureException", "Signature expired: X-Amz-Date is too skewed.")
    names = signed_headers.split(";")
    if "host" not in names or any(name not in lower for name in names):
        return Refusal(403, "InvalidSignatureException", "A signed header is missing.")
    found = _credentials_for(scope, lower.get("x-amz-security-token"))
    if isinstance(found, Refusal):
        return Refusal(403, "UnrecognizedClientException", found.message)
    principal, credentials = found

    request = AWSRequest(method=method, url=url, headers={n: lower[n] for n in names}, data=body)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(credentials, service, scope.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        return Refusal(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    return principal, scope.region
