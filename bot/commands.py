"""The `/eice` command text, parsed without I/O: pure, fast enough for the ack path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from access.config.model import OS_USER, PRINCIPAL_ARN
from access.durations import parse_duration
from access.errors import InvalidInput
from access.ids import GRANT_REF

MAX_TEXT = 3000
MAX_REASON = 1000
INSTANCE_REF = re.compile(r"^(i-[0-9a-f]{8,17}|[\w.:/=+@-]{1,255})$")
GRANT_ID = GRANT_REF
USER_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # what no one types; tabs and newlines pass
# An em or en dash and a letter: what phones and macOS make of two hyphens typed before a flag
LOOKS_LIKE_A_FLAG = re.compile("^[\u2010-\u2015\u2212]+(port|user|break-glass|since)$", re.IGNORECASE)

USAGE = """\
*Usage:* `/eice <command>`
• `request <instance-id | Name> <duration> [reason] [--port N] [--user NAME] [--break-glass]`
• `list`: your grants
• `pending`: requests waiting on you
• `revoke <grant>`: end a grant now
• `extend <grant> <duration>`: ask for more time
• `audit [i-... | @user | <grant>] [--since 7d]`
• `doctor <instance>`
• `link @user <role ARN>` (admins)
• `help`"""


class UsageError(Exception):
    """The text does not form a valid command; `message` says why, for the person who typed it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Parsed:
    """A subcommand name and its raw arguments (what the router hands to a parser)."""

    name: str
    args: list[str]


@dataclass(frozen=True)
class RequestCommand:
    instance_ref: str
    duration: str
    reason: str = ""
    port: int | None = None
    os_user: str | None = None
    break_glass: bool = False


@dataclass(frozen=True)
class NoArgs:
    """`list`, `pending`, `help`."""


@dataclass(frozen=True)
class GrantCommand:
    """`revoke <grant>`."""

    grant_id: str


@dataclass(frozen=True)
class ExtendCommand:
    grant_id: str
    duration: str


@dataclass(frozen=True)
class LinkCommand:
    user_id: str
    principal_arn: str


def split(text: str) -> Parsed:
    """Split command text into subcommand and arguments (whitespace separated)."""
    if len(text) > MAX_TEXT:
        raise UsageError(f"that command is {len(text):,} characters long; the limit is {MAX_TEXT:,}")
    if CONTROL.search(text):
        raise UsageError("that command has a control character in it; type it again without")
    words = text.split()
    if not words:
        return Parsed("help", [])
    for word in words:
        if LOOKS_LIKE_A_FLAG.match(word):
            raise UsageError(
                f"{word[:40]!r} starts with a long dash: type options with two hyphens (--port), "
                "or turn off your keyboard's smart punctuation"
            )
    return Parsed(words[0].lower(), words[1:])


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except InvalidInput as exc:
        raise UsageError(exc.message) from None
    return text.lower()


PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only: str.isdigit() also takes "²"


def port_number(value: str) -> int:
    """A TCP port typed in a command, or UsageError."""
    if not PORT.fullmatch(value) or not 1 <= int(value) <= 65535:
        raise UsageError(f"port {value[:20]!r} is not a number between 1 and 65535")
    return int(value)


def parse_request(args: list[str]) -> RequestCommand:
    """`request <instance> <duration> [reason...] [--port N] [--user NAME] [--break-glass]`."""
    usage = "usage: `/eice request <instance-id | Name> <duration> [reason] [--port N] [--user NAME]`"
    positional: list[str] = []
    port: int | None = None
    os_user: str | None = None
    break_glass = False
    words = iter(args)
    seen: set[str] = set()
    for word in words:
        if word in ("--port", "--user", "--break-glass"):
            if word in seen:
                raise UsageError(f"{word} is given twice; {usage}")
            seen.add(word)
        if word in ("--port", "--user"):
            value = next(words, None)
            if value is None:
                raise UsageError(f"{word} needs a value; {usage}")
            if word == "--port":
                port = port_number(value)
            else:
                if not OS_USER.match(value):
                    raise UsageError(f"{value[:40]!r} is not a valid OS user name")
                os_user = value
        elif word == "--break-glass":
            break_glass = True
        elif word.startswith("--"):
            raise UsageError(f"unknown option {word[:40]!r}; {usage}")
        else:
            positional.append(word)
    if len(positional) < 2:
        raise UsageError(usage)
    ref, duration, *reason_words = positional
    instance_ref(ref)
    reason = " ".join(reason_words)
    if len(reason) > MAX_REASON:
        raise UsageError(f"the reason is longer than {MAX_REASON:,} characters")
    if break_glass and not reason:
        raise UsageError("say why you need break-glass access (a reason is required)")
    return RequestCommand(ref, _duration(duration), reason, port, os_user, break_glass)


def instance_ref(ref: str) -> str:
    """An instance ID or Name as typed; a UsageError that says what to type instead."""
    if not INSTANCE_REF.match(ref):
        raise UsageError(
            f"{ref[:40]!r} is neither an instance ID (i-...) nor an instance Name (a Name with "
            "spaces or quotes cannot be typed here: use the instance ID)"
        )
    return ref


def parse_no_args(args: list[str]) -> NoArgs:
    if args:
        raise UsageError(f"this command takes no arguments (got {args[0][:40]!r})")
    return NoArgs()


def _grant_id(value: str) -> str:
    if not GRANT_ID.match(value):
        raise UsageError(f"{value[:40]!r} is not a grant ID (g-...); see `/eice list`")
    return value


def parse_revoke(args: list[str]) -> GrantCommand:
    if len(args) != 1:
        raise UsageError("usage: `/eice revoke <grant>`")
    return GrantCommand(_grant_id(args[0]))


def parse_extend(args: list[str]) -> ExtendCommand:
    if len(args) != 2:
        raise UsageError("usage: `/eice extend <grant> <duration>`")
    return ExtendCommand(_grant_id(args[0]), _duration(args[1]))


def parse_link(args: list[str]) -> LinkCommand:
    if len(args) != 2:
        raise UsageError("usage: `/eice link @user <role or user ARN>`")
    mention = USER_MENTION.match(args[0])
    user_id = mention.group(1) if mention else args[0]
    if not USER_ID.match(user_id):
        raise UsageError(f"{args[0][:40]!r} is not a Slack user; mention them as @user")
    if not PRINCIPAL_ARN.match(args[1]):
        raise UsageError(f"{args[1][:80]!r} is not an IAM role or user ARN")
    return LinkCommand(user_id, args[1])


def parse_free(args: list[str]) -> list[str]:
    """Arguments left as words, for subcommands that parse their own (audit, doctor)."""
    return list(args)
