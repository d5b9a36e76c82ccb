"""`/eice <subcommand>` routing: a dict of subcommand name to parser (ack path) and handler (lazy).

Other parts register more subcommands with `Router.add` (audit and doctor live elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.commands import USAGE, UsageError, split

if TYPE_CHECKING:
    from bot.context import Bot


@dataclass(frozen=True)
class Invocation:
    """One slash command, as the lazy handler sees it."""

    bot: Bot
    user_id: str
    channel_id: str
    say: Callable[[str], None]  # an ephemeral reply to the person who typed it


@dataclass(frozen=True)
class Subcommand:
    """A parser that must be pure and fast (it runs before the ack) and an optional handler.

    Args:
        name: the word after `/eice`.
        parse: list of words -> parsed value; raises UsageError.
        run: the slow part, after the ack (None: the ack text is the whole answer).
        ack_text: what the ack says for a parsed value.
    """

    name: str
    parse: Callable[[list[str]], Any]
    run: Callable[[Invocation, Any], None] | None
    ack_text: Callable[[Any], str | None]


class Router:
    def __init__(self) -> None:
        self.subcommands: dict[str, Subcommand] = {}

    def add(self, subcommand: Subcommand) -> None:
        """Register (or replace) a subcommand."""
        self.subcommands[subcommand.name] = subcommand

    def parse(self, text: str) -> tuple[Subcommand, Any]:
        """The subcommand and its parsed arguments; UsageError (with the usage) otherwise."""
        parsed = split(text)
        sub = self.subcommands.get(parsed.name)
        if sub is None:
            raise UsageError(f"unknown command {parsed.name[:30]!r}.\n{USAGE}")
        return sub, sub.parse(parsed.args)
