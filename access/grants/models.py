"""The grants table: one row per approved request, written before any IAM call."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from access.db import Base, Id, JsonText, UtcDateTime


class GrantStatus(StrEnum):
    APPLYING = "applying"
    ACTIVE = "active"
    REVOKING = "revoking"
    REVOKED = "revoked"
    FAILED = "failed"


# Forward order of the lifecycle; a transition may only go to a later rank.
GRANT_STATUS_RANK = {
    GrantStatus.APPLYING: 0,
    GrantStatus.ACTIVE: 1,
    GrantStatus.REVOKING: 2,
    GrantStatus.REVOKED: 3,
    GrantStatus.FAILED: 3,
}


class Grant(Base):
    """A scoped inline policy on the requester's principal, alive until `expires_at`."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(Id(), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("access_requests.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=GrantStatus.APPLYING)
    requester_id: Mapped[str] = mapped_column(String(32))
    principal_arn: Mapped[str] = mapped_column(String(2048))
    policy_name: Mapped[str] = mapped_column(String(128), unique=True)
    policy_document: Mapped[dict[str, Any]] = mapped_column(JsonText)
    account_id: Mapped[str] = mapped_column(String(12))
    region: Mapped[str] = mapped_column(String(32))
    instance_id: Mapped[str] = mapped_column(String(32))
    endpoint_id: Mapped[str] = mapped_column(String(32))
    private_ip: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    os_user: Mapped[str] = mapped_column(String(32))
    overshoot_s: Mapped[int] = mapped_column(Integer, default=300)
    # Its policy also allows the EC2 Describe calls (the rule's `allow_describe`).
    allow_describe: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Work-claim lease: who is applying or revoking this grant right now, until when.
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    overdue_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    put_request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    delete_request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped when the document changes (extension); IAM holds `applied_version`.
    policy_version: Mapped[int] = mapped_column(Integer, default=1)
    applied_version: Mapped[int] = mapped_column(Integer, default=0)
    dm_channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    dm_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (
        Index("ix_grants_status_expires", "status", "expires_at"),
        Index("ix_grants_requester", "requester_id", "created_at"),
        Index("ix_grants_instance", "instance_id", "created_at"),
        Index("ix_grants_principal", "principal_arn"),
        # The unfiltered `/eice audit` page: created_at >= since, newest first.
        Index("ix_grants_created", "created_at", "id"),
        # The CloudTrail collector matches the bot's own IAM events by request ID.
        Index("ix_grants_put_request", "put_request_id"),
        Index("ix_grants_delete_request", "delete_request_id"),
    )
