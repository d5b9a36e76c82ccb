"""IAM in the AWS sandbox: injected latency and faults, protected-role refusals, and a CloudTrail
record of every inline-policy write (moto answers the rest)."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from sandbox.aws import identity
from sandbox.aws.account import BOT_ACCESS_KEY_ID
from sandbox.aws.events import cloudtrail_record
from sandbox.aws.faults import REFUSAL_STATUS
from sandbox.aws.request_info import Headers

if TYPE_CHECKING:
    from sandbox.aws.server import AwsSandbox

POLICY_ACTIONS = {
    "PutRolePolicy": "RoleName",
    "DeleteRolePolicy": "RoleName",
    "PutUserPolicy": "UserName",
    "DeleteUserPolicy": "UserName",
}
_REQUEST_ID = re.compile(rb"<RequestId>([^<]+)</RequestId>")
_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")

Answer = tuple[int, Headers, bytes]


def handle_iam(
    sandbox: AwsSandbox,
    environ: dict,
    action: str,
    params: dict[str, list[str]],
    key: str | None,
    forward: Callable[[dict], Answer],
) -> Answer:
    """Answer one IAM call, faults and refusals first, then moto.

    Args:
        sandbox: whose fault settings apply and whose event log gets policy records.
        environ: the WSGI environ of the request.
        action: the IAM action, e.g. ``PutRolePolicy``.
        params: the query and form params.
        key: the caller's access key id, if the request was signed.
        forward: hands the request to moto and returns its answer.
    """
    faults = sandbox.faults
    if faults.iam_latency_s > 0:
        threading.Event().wait(faults.iam_latency_s)
    if faults.iam_put_delay_s > 0 and action in ("PutRolePolicy", "PutUserPolicy"):
        threading.Event().wait(faults.iam_put_delay_s)
    fault = faults.iam_fault()
    if fault == "Throttling":
        return iam_error("Throttling", "Rate exceeded", 400)
    if fault == "ServiceFailure":
        return iam_error("ServiceFailure", "Service failure (sandbox fault injection)", 500)
    name_param = POLICY_ACTIONS.get(action)
    name = params[name_param][0] if name_param and params.get(name_param) else None
    refusal = faults.refusal_for(name)
    if refusal:
        message = (
            f"Cannot perform the operation on the protected role '{name}'"
            if refusal == "UnmodifiableEntity"
            else f"User is not authorized to perform: iam:{action} on resource: {name}"
        )
        answer = iam_error(refusal, message, REFUSAL_STATUS[refusal])
    else:
        answer = forward(environ)
    if name_param:
        _record_policy_call(sandbox, environ, action, params, key, answer)
    return answer


def iam_error(code: str, message: str, status: int) -> Answer:
    """An IAM error answer in IAM's XML shape."""
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
        f"<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    return status, [("Content-Type", "text/xml")], body


def _cloudtrail_error_code(code: str) -> str:
    # CloudTrail shows IAM's modelled errors with the exception suffix.
    if code in {"NoSuchEntity", "MalformedPolicyDocument", "LimitExceeded", "UnmodifiableEntity"}:
        return code + "Exception"
    return code


def _record_policy_call(
    sandbox: AwsSandbox,
    environ: dict,
    action: str,
    params: dict[str, list[str]],
    key: str | None,
    answer: Answer,
) -> None:
    status, _, payload = answer
    principal = identity.principal_for_key(key or BOT_ACCESS_KEY_ID, sandbox.account_id)
    name_key = "roleName" if "Role" in action else "userName"
    request_parameters = {
        name_key: params[POLICY_ACTIONS[action]][0],
        "policyName": (params.get("PolicyName") or [""])[0],
    }
    if "PolicyDocument" in params:
        request_parameters["policyDocument"] = params["PolicyDocument"][0]
    request_id = _REQUEST_ID.search(payload)
    code = _ERROR_CODE.search(payload) if status >= 400 else None
    message = _ERROR_MESSAGE.search(payload) if status >= 400 else None
    record = cloudtrail_record(
        event_source="iam.amazonaws.com",
        event_name=action,
        region="us-east-1",
        identity=identity.cloudtrail_user_identity(principal),
        source_ip=environ.get("REMOTE_ADDR", "127.0.0.1"),
        user_agent=environ.get("HTTP_USER_AGENT", ""),
        request_parameters=request_parameters,
        response_elements=None,
        error_code=_cloudtrail_error_code(code.group(1).decode()) if code else None,
        error_message=message.group(1).decode() if message else None,
        request_id=request_id.group(1).decode() if request_id else None,
        account_id=sandbox.account_id,
    )
    sandbox.events.record(record)
