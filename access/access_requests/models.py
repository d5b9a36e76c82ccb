"""Tables for access requests and approvals."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from access.db import Base, Id, JsonText, UtcDateTime


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class AccessRequest(Base):
    """One person asking for one instance, for one duration."""

    __tablename__ = "access_requests"

    id: Mapped[str] = mapped_column(Id(), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.PENDING)
    requester_id: Mapped[str] = mapped_column(String(32))
    requester_name: Mapped[str] = mapped_column(String(128), default="")
    principal_arn: Mapped[str] = mapped_column(String(2048))
    account_id: Mapped[str] = mapped_column(String(12))
    region: Mapped[str] = mapped_column(String(32))
    instance_id: Mapped[str] = mapped_column(String(32))
    instance_name: Mapped[str] = mapped_column(String(256), default="")
    instance_tags: Mapped[dict[str, str]] = mapped_column(JsonText, default=dict)
    vpc_id: Mapped[str] = mapped_column(String(32), default="")
    subnet_id: Mapped[str] = mapped_column(String(32), default="")
    endpoint_id: Mapped[str] = mapped_column(String(32))
    endpoint_dns: Mapped[str] = mapped_column(String(256))
    private_ip: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    os_user: Mapped[str] = mapped_column(String(32))
    duration_s: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    rule_name: Mapped[str] = mapped_column(String(128), default="defaults")
    approvers: Mapped[list[str]] = mapped_column(JsonText, default=list)
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    approvals_count: Mapped[int] = mapped_column(Integer, default=0)
    allow_self_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    approvals_channel: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    approval_deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    preflight: Mapped[Any] = mapped_column(JsonText, nullable=True)
    extends_grant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    card_channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    card_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (
        Index("ix_access_requests_status_deadline", "status", "approval_deadline"),
        Index("ix_access_requests_requester", "requester_id", "created_at"),
        Index("ix_access_requests_instance", "instance_id", "created_at"),
    )


class Approval(Base):
    """One approver's yes; a request is approved when it has `approvals_required` of them."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("access_requests.id"))
    approver_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("request_id", "approver_id", name="uq_approvals_once"),)
