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


@pytest.mark.parametrize(
    ("worker_class", "work_ms", "refused"),
    [
        ("sync", "30000", True),
        ("sync", "29999", False),
        ("gevent", "30000", True),
        # A gthread worker beats while its threads work: nginx's timeout bounds them.
        ("gthread", "40000", False),
    ],
)
def test_the_work_limit_stays_below_the_worker_timeout_the_server_tells(worker_class, work_ms, refused):
    told = {"WORKER_CLASS": worker_class, "GUNICORN_TIMEOUT": "30", "DEMO_MAX_WORK_MS": work_ms}
    if not refused:
        assert config.from_environ(told)["DEMO_MAX_WORK_MS"] == int(work_ms)
        return
    with pytest.raises(config.ConfigError) as info:
        config.from_environ(told)
    assert str(info.value) == (
        f"DEMO_MAX_WORK_MS={work_ms} is out of range: expected below the worker timeout "
        f"(GUNICORN_TIMEOUT=30, 30000 ms, with WORKER_CLASS={worker_class})"
    )


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://app@db:5432/app", "postgresql+psycopg://app@/app?host=/var/run/postgresql"]
)
def test_a_database_url_without_a_password_is_taken(url):
    assert config.from_environ({"DATABASE_URL": url})["DATABASE_URL"] == url


def test_a_database_url_with_a_password_is_refused_without_showing_it():
    with pytest.raises(config.ConfigError) as info:
        config.from_environ({"DATABASE_URL": "postgresql+psycopg://app:hunter2@db:5432/app"})
    assert "hunter2" not in str(info.value)
    assert "it holds a password" in str(info.value)
