"""`/eice`: parse and ack at once; the work runs after the ack in a lazy listener."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from access import workflows
from access.access_requests import flows as requests
from access.access_requests.prepare import PreparedRequest, RequestInput
from access.access_requests.service import pending_requests
from access.audit.service import record
from access.aws.calls import aws_failures_as
from access.aws.lookups import one_lookup_each
from access.config.model import OS_USER
from access.config.permissions import can_link, is_admin
from access.errors import InvalidInput, NotPermitted
from access.grants import service as grant_service
from access.principals.service import link_principal
from bot import blocks
from bot.commands import (
    USAGE,
    ExtendCommand,
    GrantCommand,
    LinkCommand,
    RequestCommand,
    UsageError,
    instance_ref,
    parse_extend,
    parse_link,
    parse_no_args,
    parse_request,
    parse_revoke,
    port_number,
)
from bot.listeners import decisions
from bot.listeners.replies import lazy_job, reply, run_guarded
from bot.router import Invocation, Router, Subcommand

if TYPE_CHECKING:
    from bot.context import Bot

log = logging.getLogger(__name__)


def register(app: App, bot: Bot) -> None:
    """`/eice`: the ack answers at once; the work runs after it.

    With command workers (`eice serve`) the ack hands the body to a worker process; otherwise
    (Lambda, tests) the work is a Bolt lazy listener.
    """

    def ack_eice(ack: Ack, body: dict[str, Any]) -> bool:
        """Parse and ack; True when there is work to do after the ack (the command is then
        kept in the inbox, when there is one, before the ack)."""
        try:
            sub, parsed = bot.router.parse(body.get("text") or "")
        except UsageError as exc:
            ack(response_type="ephemeral", text=f":warning: {exc.message}")
            return False
        if sub.run is not None and bot.inbox is not None:
            bot.inbox.keep(body)
        text = sub.ack_text(parsed)
        if text is None:
            ack()
        else:
            ack(response_type="ephemeral", text=text)
        return sub.run is not None

    workers = bot.workers
    if workers is not None:

        def ack_and_queue(ack: Ack, body: dict[str, Any]) -> None:
            if ack_eice(ack, body):
                workers.submit(body)

        app.command("/eice")(ack_and_queue)
        return

    @lazy_job(bot)
    def run_eice(body: dict[str, Any]) -> None:
        handle_eice(bot, body, guarded=False)

    app.command("/eice")(ack=ack_eice, lazy=[run_eice])


def handle_eice(bot: Bot, body: dict[str, Any], *, guarded: bool = True, kick: bool = True) -> None:
    """The work after an `/eice` ack (in a lazy listener or a command worker).

    Args:
        bot: the services of this process.
        body: the slash command's body.
        guarded: turn errors into ephemeral replies (`run_guarded`).
        kick: deliver the outbox afterwards, when guarded.
    """

    def work() -> None:
        try:
            sub, parsed = bot.router.parse(body.get("text") or "")
        except UsageError:
            return  # already answered by the ack
        if sub.run is None:
            return
        invocation = Invocation(
            bot=bot,
            user_id=str(body.get("user_id", "")),
            channel_id=str(body.get("channel_id", "")),
            say=lambda text: reply(bot, body, text),
        )
        sub.run(invocation, parsed)

    if guarded:
        run_guarded(bot, "run_eice", work, body, kick=kick)
    else:
        work()


def default_router() -> Router:
    """The built-in subcommands; `audit` and `doctor` are placeholders others replace."""
    router = Router()
    router.add(Subcommand("help", parse_no_args, None, lambda _: USAGE))
    router.add(
        Subcommand(
            "request",
            parse_request,
            run_request,
            lambda c: f"Checking `{c.instance_ref}` for {c.duration}…",
        )
    )
    router.add(Subcommand("list", parse_no_args, run_list, lambda _: None))
    router.add(Subcommand("pending", parse_no_args, run_pending, lambda _: None))
    router.add(Subcommand("revoke", parse_revoke, run_revoke, lambda c: f"Revoking `{c.grant_id}`…"))
    router.add(
        Subcommand(
            "extend",
            parse_extend,
            run_extend,
            lambda c: f"Asking for {c.duration} more on `{c.grant_id}`…",
        )
    )
    router.add(Subcommand("link", parse_link, run_link, lambda _: None))
    router.add(Subcommand("doctor", parse_doctor, run_doctor, lambda c: f"Checking `{c[0]}`…"))
    router.add(Subcommand("audit", parse_audit, run_audit, lambda _: "Searching the audit trail…"))
    return router


def run_request(inv: Invocation, cmd: RequestCommand) -> None:
    bot, rt = inv.bot, inv.bot.rt
    actor = bot.directory.actor(inv.user_id)
    profile = bot.directory.profile(inv.user_id)

    def warn_first(prepared: PreparedRequest) -> None:
        # Before the request (and so its approval card) is written: nobody is paged
        # for a request the requester has not yet heard will fail.
        report = prepared.preflight
        if isinstance(report, dict) and report.get("status") == "failure":
            inv.say(
                f":x: Pre-flight: {report.get('verdict')}. The approvers see this on the "
                "card; `/eice doctor` shows the fix."
            )

    with one_lookup_each():  # validation and pre-flight share the instance/endpoint lookups
        outcome = workflows.submit_request(
            rt,
            RequestInput(
                requester=actor,
                instance_ref=cmd.instance_ref,
                duration=cmd.duration,
                reason=cmd.reason,
                port=cmd.port,
                os_user=cmd.os_user,
                break_glass=cmd.break_glass,
                requester_name=profile.name,
                email=profile.email,
            ),
            before_write=warn_first,
        )
    request = outcome.request
    if outcome.grant_id:
        how = "break-glass" if request.break_glass else "the rule (auto-approve)"
        inv.say(f"Approved by {how}: grant `{outcome.grant_id}`. Your commands are in a DM.")
        return
    inv.say(
        f"Request `{request.id}` for {blocks.instance_label(request)} sent for approval "
        f"({request.approvals_required} needed)."
    )


def run_list(inv: Invocation, _: object) -> None:
    with inv.bot.rt.db.transaction() as session:
        grants = list(grant_service.active_for_requester(session, inv.user_id))
        lines = [blocks.grant_line(g) for g in grants]
    inv.say("\n".join(["*Your grants*", *lines]) if lines else "You have no live grants.")


def waiting_on(inv_bot: Bot, user_id: str) -> list[Any]:
    """Pending requests this user may decide (all of them for admins)."""
    rt = inv_bot.rt
    actor = inv_bot.directory.actor(user_id)
    admin = is_admin(actor, rt.config)
    with rt.db.transaction() as session:
        pending = list(pending_requests(session, limit=50))
    return [
        r
        for r in pending
        if admin or (r.requester_id != user_id and actor.is_in(requests.current_rule(rt, r).approvers))
    ]


def run_pending(inv: Invocation, _: object) -> None:
    from bot.listeners.home import my_pending

    waiting = [blocks.request_line(r) for r in waiting_on(inv.bot, inv.user_id)]
    mine = [blocks.request_line(r) for r in my_pending(inv.bot, inv.user_id)]
    parts = (["*Waiting on you*", *waiting] if waiting else []) + (
        ["*Your pending requests*", *mine] if mine else []
    )
    inv.say("\n".join(parts) if parts else "Nothing is waiting on you, and you have no pending requests.")


def run_revoke(inv: Invocation, cmd: GrantCommand) -> None:
    actor = inv.bot.directory.actor(inv.user_id)
    inv.say(decisions.revoke(inv.bot, actor, cmd.grant_id))


def run_extend(inv: Invocation, cmd: ExtendCommand) -> None:
    actor = inv.bot.directory.actor(inv.user_id)
    inv.say(decisions.extend(inv.bot, actor, cmd.grant_id, cmd.duration))


def run_link(inv: Invocation, cmd: LinkCommand) -> None:
    rt = inv.bot.rt
    actor = inv.bot.directory.actor(inv.user_id)
    verdict = can_link(actor, rt.config)
    if not verdict:
        raise NotPermitted(verdict.reason)
    _linkable(inv, cmd)
    now = rt.clock.now()
    with rt.db.transaction() as session:
        link_principal(
            session,
            user_id=cmd.user_id,
            principal_arn=cmd.principal_arn,
            linked_by=actor.user_id,
            now=now,
        )
        record(
            session,
            "principal.linked",
            actor=actor.user_id,
            at=now,
            detail={"user": cmd.user_id, "principal": cmd.principal_arn},
        )
    inv.say(f"<@{cmd.user_id}> now acts as `{cmd.principal_arn}`.")


def _linkable(inv: Invocation, cmd: LinkCommand) -> None:
    """The person is a member of this workspace (not a bot, not deactivated) and the principal
    exists: a link to either would only show up later, as a request that fails."""
    try:
        user = inv.bot.client.users_info(user=cmd.user_id)["user"]
    except SlackApiError as exc:
        if exc.response.get("error") == "user_not_found":
            raise InvalidInput(f"<@{cmd.user_id}> is not in this workspace; nothing was linked") from None
        raise
    if user.get("is_bot") or user.get("deleted"):
        what = "a bot" if user.get("is_bot") else "deactivated"
        raise InvalidInput(f"<@{cmd.user_id}> is {what}; nothing was linked")
    with aws_failures_as(f"the lookup of {cmd.principal_arn}"):
        found = inv.bot.rt.iam.exists(cmd.principal_arn)
    if not found:
        raise InvalidInput(f"`{cmd.principal_arn}` does not exist in IAM; nothing was linked")


def parse_doctor(words: list[str]) -> tuple[str, int | None, str | None]:
    """`/eice doctor <instance> [--port N] [--user NAME]` (pure; runs before the ack). Port and
    user default to what a request for the instance would get (its rule's)."""
    if not words:
        raise UsageError("usage: `/eice doctor <instance-id | Name> [--port N] [--user NAME]`")
    ref, port, user = words[0], None, None
    instance_ref(ref)
    rest = words[1:]
    seen: set[str] = set()
    while rest:
        flag = rest.pop(0)
        if flag in seen:
            raise UsageError(f"{flag} is given twice")
        seen.add(flag)
        if flag in ("--port", "--user") and rest:
            value = rest.pop(0)
            if flag == "--port":
                port = port_number(value)
            elif not OS_USER.match(value):
                raise UsageError(f"{value[:40]!r} is not a valid OS user name")
            else:
                user = value
        else:
            raise UsageError(
                f"unexpected {flag[:30]!r}; usage: `/eice doctor <instance> [--port N] [--user NAME]`"
            )
    return ref, port, user


def run_doctor(inv: Invocation, cmd: tuple[str, int | None, str | None]) -> None:
    from access.aws.ec2 import find_instance
    from access.config.rules import Target, effective_rule
    from access.preflight import run_preflight
    from access.principals.service import resolve_principal
    from bot.preflight_blocks import preflight_text

    rt = inv.bot.rt
    ref, port, user = cmd
    # Check what a request would get: the instance's rule (port, OS user, overshoot) and the
    # requester's principal in the instance's account. An instance that cannot be found is
    # the pre-flight's to report. The pre-flight reuses the instance found here.
    with one_lookup_each():
        target, account = Target({}, "", ""), ""
        with contextlib.suppress(Exception):
            instance = find_instance(rt.clients, rt.regions, ref)
            target, account = Target(instance.tags, instance.region, instance.account_id), instance.account_id
        rule = effective_rule(rt.config, target)
        principal = None
        if account:
            profile = inv.bot.directory.profile(inv.user_id)
            with contextlib.suppress(Exception), rt.db.transaction() as session:
                principal = resolve_principal(
                    session, rt.config, user_id=inv.user_id, email=profile.email, account_id=account
                )
        report = run_preflight(
            rt.clients,
            rt.regions,
            ref,
            port=port or rule.port,
            os_user=user or rule.os_user,
            principal_arn=principal,
            iam=rt.iam,
            overshoot_s=int(rule.max_tunnel_overshoot.total_seconds()),
            allow_describe=rule.allow_describe,
        )
    inv.say(preflight_text(report.to_dict()))


def parse_audit(words: list[str]) -> Any:
    """`/eice audit [i-... | @user | <grant-id>] [--since 7d]` (pure; runs before the ack)."""
    from access.errors import AccessError
    from bot.audit_blocks import USAGE as AUDIT_USAGE
    from bot.audit_blocks import parse_audit_args

    try:
        return parse_audit_args(" ".join(words))
    except AccessError as exc:
        said = exc.message
        raise UsageError(said if AUDIT_USAGE in said else f"{said}\n{AUDIT_USAGE}") from exc


def run_audit(inv: Invocation, query: Any) -> None:
    from bot.listeners.audit_pages import post_first_page

    post_first_page(inv.bot, inv.user_id, inv.channel_id, query, query.as_text())
