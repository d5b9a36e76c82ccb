"""Tables for collected CloudTrail events and the collector's per-source watermarks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from access.db import Base, JsonText, UtcDateTime


class CloudTrailEvent(Base):
    """One CloudTrail record, kept once (by EventId) and tied to its grant when it matched one."""

    __tablename__ = "cloudtrail_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_name: Mapped[str] = mapped_column(String(64))
    event_source: Mapped[str] = mapped_column(String(64))
    event_time: Mapped[datetime] = mapped_column(UtcDateTime)
    region: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(12))
    # The IAM user ARN, or the role ARN behind an assumed-role session.
    principal_arn: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    session_arn: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_parameters: Mapped[Any] = mapped_column(JsonText, nullable=True)
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    endpoint_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    private_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    os_user: Mapped[str | None] = mapped_column(String(32), nullable=True)
    aws_request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    grant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    match: Mapped[str] = mapped_column(String(16))  # grant | out_of_band | bot_iam
    # Why a matched event deserves a second look, e.g. "after_expiry".
    flag: Mapped[str | None] = mapped_column(String(32), nullable=True)
    collected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    raw: Mapped[dict[str, Any]] = mapped_column(JsonText)

    __table_args__ = (
        Index("ix_cloudtrail_events_grant", "grant_id", "event_time"),
        Index("ix_cloudtrail_events_instance", "instance_id", "event_time"),
        Index("ix_cloudtrail_events_principal", "principal_arn", "event_time"),
        Index("ix_cloudtrail_events_time", "event_time"),
        Index("ix_cloudtrail_events_match", "match", "event_time"),
    )


class CollectorWatermark(Base):
    """The newest eventTime seen per (account, region, event source), and when the
    collector last looked back over its whole late-delivery window for that source."""

    __tablename__ = "collector_watermarks"

    account: Mapped[str] = mapped_column(String(12), primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When the last late pass began, and what the one under way has still to read.
    late_pass_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    late_from: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    late_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
