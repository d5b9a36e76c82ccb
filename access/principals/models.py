"""Admin-made links from a Slack user to an IAM principal (`/eice link`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from access.db import Base, UtcDateTime


class PrincipalLink(Base):
    __tablename__ = "principal_links"

    slack_user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_arn: Mapped[str] = mapped_column(String(2048))
    linked_by: Mapped[str] = mapped_column(String(32))
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime)
