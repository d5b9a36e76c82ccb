"""Resolving the IAM principal a Slack user acts as: DB link, then config map, then template."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from access.config.model import PRINCIPAL_ARN, Config
from access.errors import InvalidInput, NotFound
from access.principals.models import PrincipalLink


def resolve_principal(
    session: Session, config: Config, *, user_id: str, email: str | None, account_id: str
) -> str:
    """The principal ARN for `user_id` in `account_id`.

    Raises:
        NotFound: no link, no mapping, and no template (or no email to fill it).
    """
    link = session.get(PrincipalLink, user_id)
    if link is not None:
        return link.principal_arn
    mapped = config.principal_map.get(user_id)
    if mapped:
        return mapped
    template = config.principal_template
    if template and email and "@" in email:
        local = email.split("@", 1)[0]
        arn = template.format(account=account_id, email_local=local, email=email, user_id=user_id)
        if PRINCIPAL_ARN.match(arn):
            return arn
    raise NotFound(
        "you have no IAM principal: ask an admin to run `/eice link @you <role ARN>` "
        "or to add you to [principals] in eice.toml"
    )


def link_principal(
    session: Session, *, user_id: str, principal_arn: str, linked_by: str, now: datetime
) -> PrincipalLink:
    """Store (or replace) an admin's link from a Slack user to a principal."""
    if not PRINCIPAL_ARN.match(principal_arn):
        raise InvalidInput(f"{principal_arn[:80]!r} is not an IAM role or user ARN")
    link = session.get(PrincipalLink, user_id)
    if link is None:
        link = PrincipalLink(
            slack_user_id=user_id, principal_arn=principal_arn, linked_by=linked_by, linked_at=now
        )
        session.add(link)
    else:
        link.principal_arn, link.linked_by, link.linked_at = principal_arn, linked_by, now
    return link
