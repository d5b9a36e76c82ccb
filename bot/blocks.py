"""Block Kit builders: pure functions of rows and times, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from access.access_requests.models import AccessRequest
from access.clock import as_utc, iso
from access.durations import format_duration
from access.grants.models import Grant
from bot.actions import Action
from bot.preflight_blocks import preflight_summary_blocks

Blocks = list[dict[str, Any]]
STATUS_EMOJI = {
    "pending": ":hourglass_flowing_sand:",
    "approved": ":white_check_mark:",
    "denied": ":no_entry:",
    "cancelled": ":heavy_multiplication_x:",
    "expired": ":alarm_clock:",
}


def slack_date(at: datetime) -> str:
    """Slack's date formatting, shown in each reader's time zone, ISO as the fallback."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{iso(at)}>"


def _md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": _md(text[:3000]), **extra}


def _button(text: str, action: Action, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": str(action),
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def escape(text: str) -> str:
    """Keep people's free text from pinging channels or faking links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def instance_label(request: AccessRequest) -> str:
    name = request.instance_name or "(no Name tag)"
    return f"*{escape(name)}* `{request.instance_id}`"


def approval_card(
    request: AccessRequest, approvals: list[str], *, grant: Grant | None = None
) -> tuple[str, Blocks]:
    """The card in the approvals channel; buttons only while the request is pending."""
    tags = ", ".join(f"{escape(k)}={escape(v)}" for k, v in sorted(request.instance_tags.items()))
    kind = "Extension request" if request.extends_grant_id else "Access request"
    if request.break_glass:
        kind = ":rotating_light: Break-glass " + kind.lower()
    title = f"{kind} from <@{request.requester_id}> for {instance_label(request)}"
    fields = [
        f"*Duration*\n{format_duration(request.duration_s)}",
        f"*Port / OS user*\n{request.port} / `{request.os_user}`",
        f"*Endpoint*\n`{request.endpoint_id}`",
        f"*Account / region*\n{request.account_id} / {request.region}",
        f"*Rule*\n{escape(request.rule_name)}",
        f"*Approvals*\n{len(approvals)} of {request.approvals_required}",
    ]
    blocks: Blocks = [
        _section(title),
        {"type": "section", "fields": [_md(f) for f in fields]},
        _section(f"*Reason*\n{escape(request.reason) or '_none given_'}"),
        {"type": "context", "elements": [_md(f"Tags: {tags or 'none'} · request `{request.id}`")]},
    ]
    if isinstance(request.preflight, dict):
        blocks.extend(preflight_summary_blocks(request.preflight))
    if approvals:
        who = ", ".join(f"<@{a}>" for a in approvals if a[:1] in "UW") or ", ".join(approvals)
        blocks.append({"type": "context", "elements": [_md(f"Approved by {who}")]})
    if request.status == "pending":
        blocks.append(
            {
                "type": "actions",
                "block_id": f"decide:{request.id}",
                "elements": [
                    {
                        **_button("Approve", Action.APPROVE, request.id, "primary"),
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Approve access?"},
                            "text": _md(
                                f"<@{request.requester_id}> gets SSH to {instance_label(request)} "
                                f"for {format_duration(request.duration_s)}."
                            ),
                            "confirm": {"type": "plain_text", "text": "Approve"},
                            "deny": {"type": "plain_text", "text": "Cancel"},
                        },
                    },
                    _button("Deny", Action.DENY, request.id, "danger"),
                ],
            }
        )
    else:
        blocks.append(_section(decision_line(request, grant)))
    text = f"{kind} from <@{request.requester_id}> for {request.instance_name or request.instance_id}"
    return text, blocks


def decision_line(request: AccessRequest, grant: Grant | None) -> str:
    emoji = STATUS_EMOJI.get(request.status, "")
    by = request.decided_by or ""
    who = {"auto": "by rule (auto-approve)", "break_glass": "by break-glass", "timeout": ""}.get(
        by, f"by <@{by}>" if by else ""
    )
    when = f" {slack_date(request.decided_at)}" if request.decided_at else ""
    line = f"{emoji} *{request.status.capitalize()}* {who}{when}".replace("  ", " ")
    if request.status == "expired":
        line = f"{emoji} *Expired*: nobody approved it in time{when}"
    if request.decision_note:
        line += f"\n> {escape(request.decision_note)}"
    if grant is not None:
        line += f"\nGrant `{grant.id}` is *{grant.status}*, until {slack_date(grant.expires_at)}"
    return line


def seconds_left(expires_at: datetime) -> str:
    """Shell arithmetic for the tunnel duration to ask for when the command runs: the whole
    seconds left until `expires_at`, at most 3600. The grant policy allows at least that at
    any moment of the grant (a number worked out when the DM was sent would be refused once
    a later slice of the policy's last hour began). POSIX `sh`, bash and zsh all read it."""
    end = int(as_utc(expires_at).timestamp())
    return f"$(( ({end} - $(date +%s)) < 3600 ? ({end} - $(date +%s)) : 3600 ))"


NO_DESCRIBE = (
    "`aws ec2-instance-connect ssh` first looks the instance up (`ec2:DescribeInstances`), "
    "which this grant does not allow: it works only if your own permissions do. "
    "The other two commands need nothing beyond the grant."
)


def access_commands(grant: Grant, dns_name: str | None = None) -> list[str]:
    """The three ready-made commands for a grant (its region, port and OS user), each asking
    for a tunnel duration the policy allows whenever it is run. Given the endpoint's DNS
    name, `eice ssh` and `open-tunnel` are told the endpoint and IP and look nothing up, so
    the grant's own permissions are all they need (no `ec2:Describe*`)."""
    i, u, e, r = grant.instance_id, grant.os_user, grant.endpoint_id, grant.region
    s = seconds_left(grant.expires_at)
    port = f" --port {grant.port}" if grant.port != 22 else ""
    ssh_port = f" --ssh-port {grant.port}" if grant.port != 22 else ""
    where = f" --endpoint-id {e} --dns-name {dns_name} --private-ip {grant.private_ip}" if dns_name else ""
    dns = f" --instance-connect-endpoint-dns-name {dns_name}" if dns_name else ""
    return [
        f"eice ssh {i} --region {r}{where} --expires {iso(grant.expires_at)} --os-user {u}{port}",
        f"aws ec2-instance-connect ssh --region {r} --instance-id {i} --os-user {u}{ssh_port} "
        f"--connection-type eice --eice-options maxTunnelDuration={s},endpointId={e}",
        f"aws ec2-instance-connect open-tunnel --region {r} --instance-id {i} "
        f"--instance-connect-endpoint-id {e}{dns} "
        f"--private-ip-address {grant.private_ip} --remote-port {grant.port} --local-port 2222 "
        f"--max-tunnel-duration {s}",
    ]


def access_dm(
    grant: Grant, request: AccessRequest, *, max_tunnel_s: int, extended: bool = False
) -> tuple[str, Blocks]:
    """The requester's DM once the policy is on: expiry, commands, revoke and extend buttons."""
    verb = "extended" if extended else "approved"
    head = (
        f":key: Your access to {instance_label(request)} is {verb}. It ends {slack_date(grant.expires_at)}."
    )
    commands = "\n".join(access_commands(grant, request.endpoint_dns or None))
    notes = [
        f"Grant `{grant.id}` · port {grant.port} · OS user `{grant.os_user}` · "
        f"tunnels opened now may last {format_duration(max_tunnel_s)} (each command asks "
        "for the time left when it runs)"
    ]
    if not grant.allow_describe:
        notes.append(NO_DESCRIBE)
    blocks: Blocks = [
        _section(head),
        _section(f"```{commands}```"),
        {"type": "context", "elements": [_md(note) for note in notes]},
        grant_buttons(grant),
    ]
    target = request.instance_name or request.instance_id
    text = f"Access to {target} {verb} until {iso(grant.expires_at)}"
    return text, blocks


def grant_buttons(grant: Grant) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"grant:{grant.id}",
        "elements": [
            _button("I'm done, revoke now", Action.REVOKE, grant.id, "danger"),
            _button("Extend", Action.EXTEND, grant.id),
        ],
    }


def ended_dm(grant: Grant, headline: str) -> tuple[str, Blocks]:
    """The DM replaced once the grant is over (no buttons left to click)."""
    text = f"{headline} (grant {grant.id} on {grant.instance_id})"
    return text, [_section(f"{headline}\nGrant `{grant.id}` on `{grant.instance_id}`.")]


def reminder(grant: Grant) -> tuple[str, Blocks]:
    text = f"Your access to {grant.instance_id} ends {slack_date(grant.expires_at)}."
    return text, [_section(f":alarm_clock: {text}"), grant_buttons(grant)]


def notice(text: str) -> tuple[str, Blocks]:
    """A one-paragraph message (thread replies, DMs, alerts)."""
    return text, [_section(text)]


def grant_line(grant: Grant) -> str:
    return (
        f"`{grant.id}` `{grant.instance_id}` port {grant.port} as `{grant.os_user}`: "
        f"*{grant.status}* until {slack_date(grant.expires_at)}"
    )


def request_line(request: AccessRequest) -> str:
    return (
        f"`{request.id}` <@{request.requester_id}> → {instance_label(request)} for "
        f"{format_duration(request.duration_s)} ({request.approvals_count} of "
        f"{request.approvals_required}), times out {slack_date(request.approval_deadline)}"
    )


def home_view(grants: list[Grant], mine: list[AccessRequest], waiting: list[AccessRequest]) -> dict[str, Any]:
    """App Home: my grants (revoke/extend), my pending requests, requests waiting on me."""
    blocks: Blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Your access"}}]
    for grant in grants:
        blocks.append(_section(grant_line(grant)))
        if grant.status in ("applying", "active"):
            blocks.append(grant_buttons(grant))
    if not grants:
        blocks.append(_section("_No active grants._ Ask with `/eice request <instance> 30m`."))
    blocks += [{"type": "divider"}, _section("*Your pending requests*")]
    for request in mine:
        blocks.append(
            _section(
                request_line(request),
                accessory=_button("Cancel", Action.CANCEL, request.id),
            )
        )
    if not mine:
        blocks.append(_section("_None._"))
    blocks += [{"type": "divider"}, _section("*Waiting on you*")]
    for request in waiting:
        blocks.append(_section(request_line(request)))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"home-decide:{request.id}",
                "elements": [
                    _button("Approve", Action.APPROVE, request.id, "primary"),
                    _button("Deny", Action.DENY, request.id, "danger"),
                ],
            }
        )
    if not waiting:
        blocks.append(_section("_Nothing to approve._"))
    return {"type": "home", "blocks": blocks[:100]}
