"""app/config.py: the app's own settings, apart from the server's."""

from __future__ import annotations

import pytest

from app import config
from app.factory import create_app

pytestmark = pytest.mark.unit


def test_defaults():
    assert config.from_environ({}) == {"DEMO_ENDPOINTS": True, "DEMO_MAX_WORK_MS": 1000}


def test_values_reach_flask_config(monkeypatch):
    monkeypatch.setenv("DEMO_ENDPOINTS", "false")
    monkeypatch.setenv("DEMO_MAX_WORK_MS", " 250 ")
    app = create_app()
    assert (app.config["DEMO_ENDPOINTS"], app.config["DEMO_MAX_WORK_MS"]) == (False, 250)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DEMO_MAX_WORK_MS", "abc"),
        ("DEMO_MAX_WORK_MS", "-1"),
        ("DEMO_MAX_WORK_MS", "59001"),
        ("DEMO_MAX_WORK_MS", "2.5"),
        ("DEMO_MAX_WORK_MS", "١٢"),
        ("DEMO_ENDPOINTS", "maybe"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name, raw):
    with pytest.raises(config.ConfigError) as info:
        config.from_environ({name: raw})
    message = str(info.value)
    assert message.startswith(f"{name}={raw!r} is not valid: expected ")
    assert "\n" not in message
    assert isinstance(info.value, ValueError)  # what serving/wsgi.py turns into one line
