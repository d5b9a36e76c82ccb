"""The ack benchmark's baseline: a Bolt app that only acks `/eice`, on the same waitress stack."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from access.settings import get_settings


def bare_wsgi() -> Any:
    settings = get_settings()
    assert settings.slack_bot_token and settings.slack_signing_secret
    app = App(
        client=WebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.eice_slack_api_url,
        ),
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=True,
        token_verification_enabled=False,
    )

    def only_ack(ack: Ack) -> None:
        ack(response_type="ephemeral", text="ok")

    app.command("/eice")(only_ack)
    slack = SlackRequestHandler(app)

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"ok": true}']
        return slack(environ, start_response)

    return wsgi


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.bare_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    from waitress.server import create_server

    server: Any = create_server(bare_wsgi(), host=args.host, port=args.port, threads=args.threads)
    server.run()


if __name__ == "__main__":
    main()
