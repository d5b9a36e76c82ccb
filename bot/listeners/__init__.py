"""Listener registration: `register_listeners(app, bot)`, no decorators on a global app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt import App

from bot.listeners import buttons, commands, home, shape

if TYPE_CHECKING:
    from bot.context import Bot


def register_listeners(app: App, bot: Bot) -> None:
    """Attach the `/eice` command, the buttons and App Home to `app`.

    Args:
        app: a Bolt App built with `process_before_response=True`.
        bot: the runtime and Slack-side services the listeners use.
    """
    app.use(shape.WellFormed())
    commands.register(app, bot)
    buttons.register(app, bot)
    home.register(app, bot)
    buttons.register_fallback(app, bot)  # last: it takes any action no listener above took
