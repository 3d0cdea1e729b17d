"""demo/config.py: the app's own settings, apart from the server's."""

from __future__ import annotations

import pytest

from demo import config
from demo.factory import create_app

pytestmark = pytest.mark.unit


def test_defaults():
    assert config.from_environ({}) == {
        "DEMO_ENDPOINTS": True,
        "DEMO_MAX_WORK_MS": 1000,
        "COMPOSE_PROFILES": "",
        "DATABASE_URL": "",
        "SECRET_KEY": None,
    }


@pytest.mark.parametrize(
    ("profiles", "url"),
    [("db", config.BUNDLED_DATABASE_URL), ("monitoring,db", config.BUNDLED_DATABASE_URL), ("monitoring", "")],
)
def test_the_db_profile_means_the_bundled_database(profiles, url):
    assert config.from_environ({"COMPOSE_PROFILES": profiles})["DATABASE_URL"] == url
    named = "postgresql+psycopg://app@elsewhere:5432/app"
    assert config.from_environ({"COMPOSE_PROFILES": profiles, "DATABASE_URL": named})["DATABASE_URL"] == named


def test_the_secret_key_is_the_environments():
    # The server puts SECRET_KEY_FILE's value in SECRET_KEY (serving/app.py).
    assert config.from_environ({"SECRET_KEY": "s3cret-key"})["SECRET_KEY"] == "s3cret-key"  # noqa: S105


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
