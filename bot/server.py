"""`eice serve`: migrations checked, overdue work caught up, scheduler on, then Slack traffic."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from slack_bolt.request import BoltRequest
from slack_sdk.errors import SlackApiError

from access.audit.collector import chain_witness, collector_tick
from access.errors import ConfigError
from access.runtime import Runtime
from access.scheduler.clock import GrantClock
from access.settings import Settings
from bot import blocks
from bot.app import build_app, web_client
from bot.context import Bot
from bot.inbox import Inbox, default_root
from bot.listeners.replies import reply, user_of
from bot.metrics import BotMetrics
from bot.workers import CommandWorkers
from bot.wsgi import EiceWsgiApp, HealthProbe

log = logging.getLogger(__name__)
OUTBOX_TICK_S = 1.0
INBOX_TICK_S = 5.0  # how often to look for acked requests left by a server that is gone
REPLAY_WITHIN = timedelta(minutes=30)  # older acked requests are not run, their users told
LOST_COMMAND = ":x: Your command could not be run (a worker failed); please try again."


# What Slack answers for a token that will never work; anything else may pass (start anyway).
TOKEN_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)


def check_tokens(settings: Settings, *, socket_mode: bool) -> None:
    """Ask Slack about the tokens before anything starts: who the bot token is
    (`auth.test`), and in Socket Mode a connection URL for the app token
    (`apps.connections.open`, which connects nothing). A token Slack refuses stops start-up
    with one line; Slack not answering is logged, and start-up goes on (the outbox and
    Bolt's socket client retry once it answers)."""
    client = web_client(settings)  # no bot token at all: ConfigError, as it says
    app_token = settings.slack_app_token if socket_mode else None
    checks: list[tuple[str, Callable[[], Any]]] = [("SLACK_BOT_TOKEN", client.auth_test)]
    if app_token is not None:
        secret = app_token.get_secret_value()
        checks.append(("SLACK_APP_TOKEN", lambda: client.apps_connections_open(app_token=secret)))
    for name, ask in checks:
        try:
            ask()
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in TOKEN_REFUSED:
                raise ConfigError(f"Slack refused {name}: {error}") from None
            log.warning("Slack answered %s about %s; starting all the same", error, name)
        except Exception as exc:
            log.warning("could not reach Slack to check %s (%s); starting all the same", name, exc)


def check_migrations(url: str, *, upgrade: bool = False) -> None:
    """Refuse to serve a database that is not at the newest revision (or bring it there)."""
    from access.migrate import require_current

    require_current(url, bring_up=upgrade)


class Service:
    """Everything `eice serve` runs besides the transport: scheduler, outbox, command workers.

    Args:
        rt: the runtime.
        settings: the settings `rt` was built from (command workers rebuild theirs from them).
        command_workers: processes that run `/eice` commands after the ack (0: threads here;
            default `EICE_COMMAND_WORKERS`).
    """

    def __init__(self, rt: Runtime, settings: Settings, *, command_workers: int | None = None) -> None:
        self.rt = rt
        self.settings = settings
        self.metrics = BotMetrics()
        if command_workers is None:
            command_workers = settings.eice_command_workers
        client = web_client(settings)  # before anything is made on disk: a missing token stops here
        root = Path(settings.eice_inbox_dir) if settings.eice_inbox_dir else default_root()
        self.inbox = Inbox(root / rt.installation_id())
        self.workers = (
            CommandWorkers(settings, processes=command_workers, inbox=self.inbox.folder)
            if command_workers
            else None
        )
        self.bot = Bot.create(rt, client, metrics=self.metrics, workers=self.workers, inbox=self.inbox)
        if self.workers is not None:
            self.workers.on_lost = self._lost
        self.app = build_app(rt, settings, bot=self.bot)
        self.clock = GrantClock(
            rt,
            reconcile_every_s=settings.eice_reconciler_interval_s,
            extra_ticks={
                "outbox": (OUTBOX_TICK_S, self.bot.dispatcher.kick),
                "reaper-watch": (OUTBOX_TICK_S, self._watch_reaper),
                "cloudtrail": (settings.eice_collector_interval_s, lambda: collector_tick(rt)),
                "chain-witness": (settings.eice_chain_witness_interval_s, lambda: chain_witness(rt)),
                "inbox": (INBOX_TICK_S, self._adopt),
            },
        )
        self.health = HealthProbe(rt)
        self.health.scheduler_running = lambda: bool(self.clock.scheduler.running)
        self.health.last_reaper_pass = self._last_pass
        self._passes_seen = -1
        self._last_pass_at: datetime | None = None

    def start(self) -> None:
        """Start-up order matters: overdue revocations first, then the clocks, then traffic."""
        report = self.clock.catch_up()
        self._last_pass_at = datetime.now(UTC)
        log.info("start-up catch-up: %s", report)
        self.metrics.watch_database(self.rt)
        self.metrics.watch_inbox(self.inbox)
        if self.workers is not None:
            self.workers.start()
        self.bot.dispatcher.start()
        self._adopt()
        self.clock.start()

    def stop(self) -> None:
        """Finish the queued commands first, then the clocks and the outbox."""
        if self.workers is not None:
            self.workers.stop()
        self.clock.stop()
        self.bot.dispatcher.stop()
        self.inbox.close()

    def _lost(self, body: dict[str, Any]) -> None:
        """A command no worker could run: say so; it leaves the inbox (not to run later)."""
        reply(self.bot, body, LOST_COMMAND)
        self.inbox.settle(body)

    def _adopt(self) -> None:
        """Run the acked requests of servers of this installation that stopped before
        finishing them: each goes through the app again, as a (verified) Socket Mode request;
        one acked more than `REPLAY_WITHIN` ago is not run, and its user is told."""
        replayed = self.inbox.adopt(self._replay)
        if replayed:
            self.metrics.replayed.inc(replayed)
            log.warning("ran %d acked request(s) again after their server stopped", replayed)

    def _replay(self, body: dict[str, Any], kept_at: datetime) -> None:
        if datetime.now(UTC) - kept_at <= REPLAY_WITHIN:
            self.app.dispatch(BoltRequest(body=body, mode="socket_mode"))
            return
        text = (
            f":warning: Your {_what(body)} of {blocks.slack_date(kept_at)} was not carried out: the bot "
            "stopped before it could, and it is too late to do it now. Please try again."
        )
        user = user_of(body)
        if user:
            with contextlib.suppress(Exception):  # logged by the client; nothing else to do
                self.bot.client.chat_postMessage(channel=user, text=text)
        log.warning("not running a request acked at %s (too old): %s", kept_at.isoformat(), _what(body))

    def _watch_reaper(self) -> None:
        if self.clock.passes != self._passes_seen:
            self._passes_seen = self.clock.passes
            self._last_pass_at = datetime.now(UTC)

    def _last_pass(self) -> str | None:
        return self._last_pass_at.isoformat() if self._last_pass_at else None


def _what(body: dict[str, Any]) -> str:
    """A request as its user would recognise it: the command, or the button clicked."""
    if body.get("command"):
        return f"`{blocks.escape(str(body['command']))} {blocks.escape(str(body.get('text') or ''))}`"
    action = (body.get("actions") or [{}])[0]
    label = ((action.get("text") or {}).get("text")) or action.get("action_id") or "a button"
    return f"click on *{blocks.escape(str(label))}*"


def freeze_startup_heap() -> None:
    """Collect once, then leave everything built so far out of the cyclic GC's walks.

    The serving process holds boto3's, SQLAlchemy's and Bolt's start-up objects (hundreds of
    thousands); each full collection walked all of them while every thread, the ack threads
    included, waited: pauses of tens of milliseconds. Frozen, a collection walks only what
    was allocated since (the same technique as `gc.freeze()` before forking workers).
    """
    gc.collect()
    gc.freeze()


def serve_http(service: Service, *, host: str, port: int, threads: int = 16) -> None:
    """Serve `/slack/events`, `/healthz` and `/metrics` on waitress until SIGTERM/SIGINT."""
    from waitress.server import create_server

    # Shorter GIL slices: an ack waiting behind a lazy listener (buttons) gets its turn sooner.
    sys.setswitchinterval(0.001)
    freeze_startup_heap()
    secret = service.settings.slack_signing_secret
    wsgi = EiceWsgiApp(
        service.app,
        service.health,
        service.metrics,
        signing_secret=secret.get_secret_value() if secret is not None else None,
    )
    server: Any = create_server(
        wsgi, host=host, port=port, threads=threads, ident="eice", connection_limit=1000
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        server.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("eice serving Slack on http://%s:%s/slack/events", host, server.effective_port)
    try:
        server.run()
    except (OSError, ValueError):
        if not stop.is_set():
            raise
    finally:
        service.stop()


SOCKET_KINDS = {"slash_commands": "command", "interactive": "interaction", "events_api": "event"}


def _measured(handler: Any, metrics: BotMetrics) -> Callable[[Any, Any], None]:
    """Bolt's Socket Mode listener, counting each envelope and timing its ack as the HTTP path
    does (`eice_slack_requests`, `eice_ack_seconds`)."""
    from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response

    def handle(client: Any, req: Any) -> None:
        started = time.perf_counter()
        response = run_bolt_app(handler.app, req)
        send_response(client, req, response, time.time())
        metrics.requests.labels(kind=SOCKET_KINDS.get(req.type, "other"), status=str(response.status)).inc()
        metrics.ack_seconds.observe(time.perf_counter() - started)

    return handle


def serve_socket(service: Service, *, host: str, port: int) -> None:
    """Socket Mode through Bolt's built-in (sync) adapter, with `/healthz` and `/metrics` on
    `host:port`; blocks until SIGTERM or SIGINT, then stops as `serve_http` does."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from waitress.server import create_server

    token = service.settings.slack_app_token
    if token is None:
        raise ConfigError("SLACK_APP_TOKEN is not set; use --http for HTTP mode")
    freeze_startup_heap()
    probe = EiceWsgiApp(service.app, service.health, service.metrics, slack_events=False)
    server: Any = create_server(probe, host=host, port=port, threads=2, ident="eice")
    threading.Thread(target=server.run, name="eice-health", daemon=True).start()
    log.info("eice health and metrics on http://%s:%s/healthz and /metrics", host, server.effective_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    handler = SocketModeHandler(service.app, token.get_secret_value())
    handler.client.socket_mode_request_listeners[:] = [_measured(handler, service.metrics)]
    try:
        try:
            handler.connect()
        except SlackApiError as exc:
            raise ConfigError(f"Slack refused SLACK_APP_TOKEN: {exc.response.get('error')}") from None
        log.info("eice connected to Slack in Socket Mode")
        stop.wait()
    finally:
        handler.close()
        server.close()
        service.stop()
