"""Who a Slack user is: their user groups (for approver rights) and profile, cached briefly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from access.config.model import SLACK_GROUP, Config
from access.config.permissions import Actor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    name: str
    email: str | None


def groups_in(config: Config) -> frozenset[str]:
    """Every user-group ID the config names (approvers, requesters, admins, break-glass)."""
    ids: set[str] = set()
    lists: list[Iterable[str] | None] = [
        config.defaults.approvers,
        config.defaults.requesters,
        config.defaults.admins,
        config.break_glass.requesters,
    ]
    for rule in config.rules:
        lists += [rule.approvers, rule.requesters]
    for values in lists:
        ids.update(v for v in values or () if SLACK_GROUP.match(v))
    return frozenset(ids)


class SlackDirectory:
    """Resolves Actors and profiles through the Web API, with a short TTL cache.

    Args:
        client: the bot's WebClient.
        config: the loaded config (which user groups matter).
        ttl_s: how long group memberships and profiles are trusted.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        client: WebClient,
        config: Config,
        *,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.groups = groups_in(config)
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._members: tuple[float, dict[str, frozenset[str]]] | None = None
        self._profiles: dict[str, tuple[float, Profile]] = {}

    def actor(self, user_id: str) -> Actor:
        """The user with the config's user groups they belong to (fail closed: none on error)."""
        members = self._group_members()
        return Actor(user_id, frozenset(g for g, users in members.items() if user_id in users))

    def profile(self, user_id: str) -> Profile:
        now = self.clock()
        with self._lock:
            cached = self._profiles.get(user_id)
            if cached and now - cached[0] < self.ttl_s:
                return cached[1]
        try:
            user = self.client.users_info(user=user_id)["user"]
        except SlackApiError as exc:
            log.warning("users.info for %s failed: %s", user_id, exc.response.get("error"))
            return Profile(user_id, None)
        p = user.get("profile") or {}
        found = Profile(p.get("display_name") or user.get("name") or user_id, p.get("email"))
        with self._lock:
            self._profiles[user_id] = (now, found)
        return found

    def _group_members(self) -> dict[str, frozenset[str]]:
        now = self.clock()
        with self._lock:
            if self._members and now - self._members[0] < self.ttl_s:
                return self._members[1]
        members: dict[str, frozenset[str]] = {}
        for group in sorted(self.groups):
            try:
                users = self.client.usergroups_users_list(usergroup=group)["users"]
                members[group] = frozenset(users)
            except SlackApiError as exc:
                # Not cached: an unknown membership must not grant rights, nor stick around.
                log.warning("usergroups.users.list %s failed: %s", group, exc.response.get("error"))
                return members
        with self._lock:
            self._members = (now, members)
        return members
