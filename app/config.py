"""The app's own settings, read from the environment once, when the app is made.

These are what a fork configures about its app; how it is served (workers,
timeouts, proxies, logging, metrics) is the server's, in serving/settings.py.
Add yours to `VARIABLES`, then to the README's table and `.env.example` (a
unit test says when they disagree).

A bad value raises ConfigError, a ValueError whose message names the
variable: the server turns it into one line and stops the start
(serving/wsgi.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable holds a value the app must not start with."""


def flag(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not valid: expected true or false")


def whole_number(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            raise ConfigError(f"{name}={raw!r} is not valid: expected a whole number from {low} to {high}")
        return int(raw)

    return parse


@dataclass(frozen=True)
class Setting:
    """One variable: the Flask config key it fills, how to read it, its
    default, and what it means (the README's table says the same)."""

    name: str
    parse: Callable[[str, str], object]
    default: object
    meaning: str


VARIABLES: tuple[Setting, ...] = (
    Setting(
        "DEMO_ENDPOINTS",
        flag,
        True,
        "serve the demonstration endpoints (`/work/*`, `/client`, app/demo.py); `false` in your fork",
    ),
    Setting(
        "DEMO_MAX_WORK_MS",
        whole_number(0, 59_000),
        1000,
        "most milliseconds one `/work/io` or `/work/cpu` request may ask for",
    ),
)


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Every variable's value, by name: the environment's, or the default."""
    environ = os.environ if environ is None else environ
    values = {}
    for setting in VARIABLES:
        raw = environ.get(setting.name, "").strip()
        values[setting.name] = setting.parse(setting.name, raw) if raw else setting.default
    return values
