"""A pure IAM identity-policy evaluator: the part of IAM the sandbox needs to say yes or no.

Follows AWS's documented evaluation logic for identity policies: an explicit Deny wins,
then an Allow, else the request is implicitly denied.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

ContextValue = str | Sequence[str]
Context = dict[str, ContextValue]


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation: allowed, why, and which statements decided it."""

    allowed: bool
    reason: str  # "allowed" | "explicit-deny" | "implicit-deny"
    matched: tuple[str, ...] = field(default_factory=tuple)


def evaluate(
    policies: Sequence[dict[str, Any]],
    *,
    action: str,
    resource: str,
    context: Mapping[str, ContextValue],
) -> Decision:
    """Decide whether `action` on `resource` is allowed by the identity `policies`.

    Args:
        policies: policy documents (`{"Version": ..., "Statement": [...]}`).
        action: `service:Action`, matched case-insensitively.
        resource: the resource ARN.
        context: request context keys (case-insensitive) to string or list-of-string values.
    """
    ctx = {key.lower(): value for key, value in context.items()}
    allows: list[str] = []
    denies: list[str] = []
    for p_index, policy in enumerate(policies):
        for s_index, statement in enumerate(_statements(policy)):
            if not _statement_applies(statement, action, resource, ctx):
                continue
            sid = str(statement.get("Sid") or f"policy{p_index}/statement{s_index}")
            effect = str(statement.get("Effect", ""))
            if effect == "Deny":
                denies.append(sid)
            elif effect == "Allow":
                allows.append(sid)
    if denies:
        return Decision(False, "explicit-deny", tuple(denies))
    if allows:
        return Decision(True, "allowed", tuple(allows))
    return Decision(False, "implicit-deny", ())


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int | float | bool):
        return [_scalar(value)]
    return [_scalar(v) for v in value]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _statement_applies(statement: dict[str, Any], action: str, resource: str, ctx: Context) -> bool:
    if "Action" in statement:
        if not any(_wildcard(p, action, ignore_case=True) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_wildcard(p, action, ignore_case=True) for p in _as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        patterns = [_substitute(p, ctx) for p in _as_list(statement["Resource"])]
        if not any(p is not None and _wildcard(p, resource) for p in patterns):
            return False
    elif "NotResource" in statement:
        patterns = [_substitute(p, ctx) for p in _as_list(statement["NotResource"])]
        if any(p is not None and _wildcard(p, resource) for p in patterns):
            return False
    else:
        return False
    result = _conditions_hold(statement.get("Condition") or {}, ctx)
    if result is None:
        # An operator IAM would have refused at PutRolePolicy: fail closed either way.
        return statement.get("Effect") == "Deny"
    return result


@lru_cache(maxsize=1024)
def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _wildcard_regex(pattern, ignore_case).fullmatch(value) is not None


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}


def _substitute(text: str, ctx: Context) -> str | None:
    """Fill `${key}` policy variables; None when a variable has no (single) value."""
    if "${" not in text:
        return text
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        name, _, default = match.group(1).partition(", ")
        if name in _SPECIAL:
            return _SPECIAL[name]
        value = ctx.get(name.strip().lower())
        if isinstance(value, str):
            return value
        if default:
            return default.strip().strip("'")
        missing = True
        return ""

    filled = _VARIABLE.sub(fill, text)
    return None if missing else filled


# --- condition operators --------------------------------------------------------------

Matcher = Callable[[str, str], bool]


def _str_eq(cv: str, pv: str) -> bool:
    return cv == pv


def _str_eq_ic(cv: str, pv: str) -> bool:
    return cv.lower() == pv.lower()


def _str_like(cv: str, pv: str) -> bool:
    return _wildcard(pv, cv)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric(compare: Callable[[float, float], bool]) -> Matcher:
    def match(cv: str, pv: str) -> bool:
        a, b = _number(cv), _number(pv)
        return a is not None and b is not None and compare(a, b)

    return match


def _date(text: str) -> datetime | None:
    raw = text.strip()
    try:
        if re.fullmatch(r"-?\d+(\.\d+)?", raw):
            return datetime.fromtimestamp(float(raw), UTC)
        if raw.endswith(("Z", "z")):
            raw = raw[:-1] + "+00:00"
        parsed = datetime.fromisoformat(raw)
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _dates(compare: Callable[[datetime, datetime], bool]) -> Matcher:
    def match(cv: str, pv: str) -> bool:
        a, b = _date(cv), _date(pv)
        return a is not None and b is not None and compare(a, b)

    return match


def _bool(cv: str, pv: str) -> bool:
    return cv.lower() == pv.lower()


def _ip(cv: str, pv: str) -> bool:
    try:
        address = ipaddress.ip_network(cv.strip(), strict=False)
        network = ipaddress.ip_network(pv.strip(), strict=False)
    except ValueError:
        return False
    if address.version != network.version:
        return False
    return address.subnet_of(network)  # type: ignore[arg-type]


def _arn_like(cv: str, pv: str) -> bool:
    c_parts, p_parts = cv.split(":", 5), pv.split(":", 5)
    if len(c_parts) != 6 or len(p_parts) != 6 or c_parts[0] != "arn":
        return False
    return all(_wildcard(p, c) for p, c in zip(p_parts, c_parts, strict=True))


# name -> (matcher, negated)
_OPERATORS: dict[str, tuple[Matcher, bool]] = {
    "stringequals": (_str_eq, False),
    "stringnotequals": (_str_eq, True),
    "stringequalsignorecase": (_str_eq_ic, False),
    "stringnotequalsignorecase": (_str_eq_ic, True),
    "stringlike": (_str_like, False),
    "stringnotlike": (_str_like, True),
    "numericequals": (_numeric(lambda a, b: a == b), False),
    "numericnotequals": (_numeric(lambda a, b: a == b), True),
    "numericlessthan": (_numeric(lambda a, b: a < b), False),
    "numericlessthanequals": (_numeric(lambda a, b: a <= b), False),
    "numericgreaterthan": (_numeric(lambda a, b: a > b), False),
    "numericgreaterthanequals": (_numeric(lambda a, b: a >= b), False),
    "dateequals": (_dates(lambda a, b: a == b), False),
    "datenotequals": (_dates(lambda a, b: a == b), True),
    "datelessthan": (_dates(lambda a, b: a < b), False),
    "datelessthanequals": (_dates(lambda a, b: a <= b), False),
    "dategreaterthan": (_dates(lambda a, b: a > b), False),
    "dategreaterthanequals": (_dates(lambda a, b: a >= b), False),
    "bool": (_bool, False),
    "ipaddress": (_ip, False),
    "notipaddress": (_ip, True),
    "arnequals": (_arn_like, False),
    "arnlike": (_arn_like, False),
    "arnnotequals": (_arn_like, True),
    "arnnotlike": (_arn_like, True),
}


def _conditions_hold(conditions: dict[str, Any], ctx: Context) -> bool | None:
    """All operators and keys must hold (AND); None when an operator is unknown."""
    for operator, keyed in conditions.items():
        if not isinstance(keyed, dict):
            return None
        for key, policy_values in keyed.items():
            result = _condition_holds(operator, key, _as_list(policy_values), ctx)
            if result is None:
                return None
            if not result:
                return False
    return True


def _condition_holds(operator: str, key: str, policy_values: list[str], ctx: Context) -> bool | None:
    qualifier, _, name = operator.rpartition(":")
    qualifier = qualifier.lower()
    name = name.lower()
    raw = ctx.get(key.lower())
    present = raw is not None and not (not isinstance(raw, str) and len(raw) == 0)
    values = [raw] if isinstance(raw, str) else list(raw or [])

    if name == "null":
        # "true": the key must be absent; "false": it must be present.
        return any((pv.lower() == "true") == (not present) for pv in policy_values)

    if_exists = name.endswith("ifexists")
    if if_exists:
        name = name[: -len("ifexists")]
    if name not in _OPERATORS or qualifier not in ("", "foranyvalue", "forallvalues"):
        return None
    matcher, negated = _OPERATORS[name]
    policy_values = [pv for pv in (_substitute(v, ctx) for v in policy_values) if pv is not None]

    if not present:
        if if_exists or qualifier == "forallvalues":
            return True
        if qualifier == "foranyvalue":
            return False
        return negated

    def single(value: str) -> bool:
        hit = any(matcher(value, pv) for pv in policy_values)
        return not hit if negated else hit

    if qualifier == "forallvalues":
        return all(single(v) for v in values)
    if qualifier == "foranyvalue":
        return any(single(v) for v in values)
    # A single-valued operator on a multivalued key: every value must pass a negated
    # test, any value may pass a positive one.
    return all(single(v) for v in values) if negated else any(single(v) for v in values)
