"""SendSSHPublicKey: push a key to an instance for 60 seconds, as EC2 Instance Connect does."""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.ec2.models import ec2_backends

from sandbox.aws.events import cloudtrail_record
from sandbox.aws.iam_eval import evaluate
from sandbox.aws.identity import cloudtrail_user_identity, identity_policies
from sandbox.aws.sigv4 import Refusal, verify_authorization_header

TARGET = "AWSEC2InstanceConnectService.SendSSHPublicKey"
SERVICE = "ec2-instance-connect"
KEY_VALIDITY = timedelta(seconds=60)
_INSTANCE_ID = re.compile(r"^i-[a-f0-9]+$")
_JSON = "application/x-amz-json-1.1"


@dataclass(frozen=True)
class PushedKey:
    instance_id: str
    os_user: str
    public_key: str
    pushed_at: datetime


class PushedKeys:
    """Keys pushed with SendSSHPublicKey; each is honoured for 60 s."""

    def __init__(self, validity: timedelta = KEY_VALIDITY) -> None:
        self.validity = validity
        self._lock = threading.Lock()
        self._keys: list[PushedKey] = []

    def add(self, instance_id: str, os_user: str, public_key: str, at: datetime | None = None) -> None:
        with self._lock:
            self._keys.append(PushedKey(instance_id, os_user, public_key, at or datetime.now(UTC)))

    def valid(self, instance_id: str, os_user: str, now: datetime | None = None) -> list[str]:
        """Public keys (OpenSSH text) usable right now for this instance and OS user."""
        at = now or datetime.now(UTC)
        with self._lock:
            self._keys = [k for k in self._keys if at - k.pushed_at <= self.validity]
            return [k.public_key for k in self._keys if k.instance_id == instance_id and k.os_user == os_user]


def find_instance(instance_id: str, region: str | None = None) -> Any | None:
    """The moto instance with this id, in any account and region (or the one given)."""
    for per_account in list(ec2_backends.values()):
        for name, backend in list(per_account.items()):
            if region is not None and name != region:
                continue
            for instance in backend.all_instances():
                if instance.id == instance_id:
                    return instance
    return None


class InstanceConnectService:
    """The JSON 1.1 SendSSHPublicKey handler; `install()` registers it with the sandbox."""

    def __init__(self, sandbox: Any, keys: PushedKeys | None = None) -> None:
        self.sandbox = sandbox
        self.keys = keys or PushedKeys()

    def install(self) -> InstanceConnectService:
        self.sandbox.register_json_target(TARGET, self.handle)
        return self

    def handle(self, info: Any) -> tuple[int, dict[str, str], bytes]:
        """Answer one SendSSHPublicKey request (a sandbox RequestInfo)."""
        request_id = str(uuid.uuid4())
        host = info.headers.get("Host", "127.0.0.1")
        url = f"http://{host}{info.path}" + (f"?{info.query_string}" if info.query_string else "")
        verified = verify_authorization_header(
            method=info.method, url=url, headers=info.headers, body=info.body, service=SERVICE
        )
        if isinstance(verified, Refusal):
            return _answer(
                verified.status, {"__type": verified.code, "message": verified.message}, request_id
            )
        principal, region = verified
        try:
            request = json.loads(info.body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return _answer(400, {"__type": "SerializationException", "message": "Bad JSON"}, request_id)
        instance_id = str(request.get("InstanceId", ""))
        os_user = str(request.get("InstanceOSUser", ""))
        public_key = str(request.get("SSHPublicKey", ""))

        def respond(
            status: int, body: dict[str, Any], code: str | None = None
        ) -> tuple[int, dict[str, str], bytes]:
            success = code is None
            record = cloudtrail_record(
                event_source="ec2-instance-connect.amazonaws.com",
                event_name="SendSSHPublicKey",
                region=region,
                identity=cloudtrail_user_identity(principal),
                source_ip=info.client_ip,
                user_agent=info.headers.get("User-Agent", ""),
                request_parameters={
                    "instanceId": instance_id,
                    "instanceOSUser": os_user,
                    "sSHPublicKey": public_key,
                },
                response_elements={"requestId": request_id, "success": True} if success else None,
                resources=[{"type": "AWS::EC2::Instance", "ARN": arn}],
                error_code=code,
                error_message=None if success else str(body.get("message", "")),
                request_id=request_id,
                account_id=principal.account_id,
            )
            self.sandbox.events.record(record)
            return _answer(status, body, request_id)

        arn = f"arn:aws:ec2:{region}:{principal.account_id}:instance/{instance_id}"
        problem = _invalid(instance_id, os_user, public_key)
        if problem:
            return respond(
                400, {"__type": "InvalidArgsException", "message": problem}, "InvalidArgsException"
            )
        instance = find_instance(instance_id, region)
        if instance is None or instance.state != "running":
            message = f"Instance {instance_id} is not found or not running"
            return respond(
                400,
                {"__type": "EC2InstanceNotFoundException", "message": message},
                "EC2InstanceNotFoundException",
            )
        now = datetime.now(UTC)
        decision = evaluate(
            identity_policies(principal),
            action=f"{SERVICE}:SendSSHPublicKey",
            resource=arn,
            context={
                "ec2:osuser": os_user,
                "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "aws:EpochTime": str(int(now.timestamp())),
                "aws:SourceIp": info.client_ip,
                "aws:PrincipalArn": principal.role_arn or principal.arn,
                "aws:RequestedRegion": region,
            },
        )
        if not decision.allowed:
            message = (
                f"User: {principal.arn} is not authorized to perform: "
                f"{SERVICE}:SendSSHPublicKey on resource: {arn}"
            )
            return respond(
                400,
                {"__type": "AccessDeniedException", "Message": message, "message": message},
                "AccessDenied",
            )
        self.keys.add(instance_id, os_user, public_key.strip(), now)
        return respond(200, {"RequestId": request_id, "Success": True})


def _invalid(instance_id: str, os_user: str, public_key: str) -> str | None:
    if not _INSTANCE_ID.match(instance_id):
        return "InstanceId must match ^i-[a-f0-9]+$"
    if not 1 <= len(os_user) <= 32:
        return "InstanceOSUser must be 1 to 32 characters"
    if not 80 <= len(public_key) <= 4096:
        return "SSHPublicKey must be 80 to 4096 characters"
    return None


def _answer(status: int, body: dict[str, Any], request_id: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": _JSON, "x-amzn-RequestId": request_id}
    return status, headers, json.dumps(body).encode()
