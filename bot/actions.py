"""Every interactive element's action_id, in one place."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """Button action IDs; the button's `value` carries the request or grant ID."""

    APPROVE = "eice_approve"
    DENY = "eice_deny"
    REVOKE = "eice_revoke"
    EXTEND = "eice_extend"
    CANCEL = "eice_cancel"


class AuditAction(StrEnum):
    """`/eice audit` page buttons; the value is JSON `{"q": command text, "page": n}`."""

    PREVIOUS = "audit_page_previous"
    NEXT = "audit_page_next"
