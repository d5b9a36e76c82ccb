"""Every table, imported in one place so that Alembic and tests see the whole schema."""

from access.access_requests.models import AccessRequest, Approval, RequestStatus
from access.audit.cloudtrail_models import CloudTrailEvent, CollectorWatermark  # noqa: F401
from access.audit.models import AuditEvent
from access.db import Base
from access.grants.models import Grant, GrantStatus
from access.installation import Installation
from access.outbox.models import OutboxMessage
from access.principals.models import PrincipalLink

__all__ = [
    "AccessRequest",
    "Approval",
    "AuditEvent",
    "Base",
    "Grant",
    "GrantStatus",
    "Installation",
    "OutboxMessage",
    "PrincipalLink",
    "RequestStatus",
]
