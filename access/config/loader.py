"""Reading `eice.toml`: a bad file fails at start-up naming the file, the key and the problem."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import ValidationError

from access.config.model import Config
from access.errors import ConfigError


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the config at `path` (or `EICE_CONFIG`); built-in defaults when unset.

    Raises:
        ConfigError: the file is missing, not TOML, or not valid; the message says where.
    """
    if path is None:
        path = os.environ.get("EICE_CONFIG") or None
    if path is None:
        return Config()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror or exc}") from exc
    return parse_config(text, source=str(file))


def parse_config(text: str, *, source: str = "eice.toml") -> Config:
    """Validate TOML text as a config; errors name `source`, the key path and what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (check the spelling)"
            problems.append(f"{source}: {key}: {message}")
        raise ConfigError("\n".join(problems)) from exc
