"""Application dispatching (APP_MOUNTS; serving/dispatch.py): the mount
table read from the setting, a bad value stopping the start with one line,
no dispatcher at all when nothing is mounted, and, with the demo's mounts
(demo/admin.py, a Flask app; demo/plain_wsgi.py, a plain WSGI callable), each
prefix reaching its app with the right SCRIPT_NAME, JSON errors naming the
request id, and metrics labelled by app on a real gunicorn."""

from __future__ import annotations

import json

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from serving import dispatch, health
from serving.middleware import wrap
from serving.settings import RESERVED_PREFIXES, SettingsError, load
from serving.wsgi import load_mounted

pytestmark = pytest.mark.unit

DEMO_MOUNTS = "/admin=demo.admin:application,/plain=demo.plain_wsgi:application"
REQUEST_ID = "dispatch-test-0001"


# --- the mount table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "table"),
    [
        ("/admin=demo.admin:application", (("/admin", "demo.admin:application"),)),
        (
            " /admin = demo.admin:application , /plain=demo.plain_wsgi:application ",
            (("/admin", "demo.admin:application"), ("/plain", "demo.plain_wsgi:application")),
        ),
        ("/api/v1=legacy_project.wsgi:application", (("/api/v1", "legacy_project.wsgi:application"),)),
    ],
)
def test_the_mount_table_is_read_from_the_setting_in_order(raw, table):
    assert load({"APP_MOUNTS": raw}, cpus=1).app_mounts == table


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("admin=demo.admin:application", "'admin=demo.admin:application' is not valid"),
        ("/admin/=demo.admin:application", "is not valid"),
        ("/=demo.admin:application", "is not valid"),
        ("/admin", "is not valid: expected /PREFIX=module:attribute"),
        ("/admin=demo.admin", "is not valid"),
        ("/admin=demo.admin:", "is not valid"),
        ("/ad min=demo.admin:application", "is not valid"),
        ("/admin=demo.admin:application,", "'' is not valid"),
        ("/healthz=demo.admin:application", "/healthz is reserved"),
        ("/static/admin=demo.admin:application", "/static/admin is reserved"),
        ("/admin=demo.admin:application,/admin=demo.plain_wsgi:application", "/admin is mounted twice"),
    ],
)
def test_a_bad_mount_table_is_refused_with_one_line_naming_the_variable(raw, fragment):
    with pytest.raises(SettingsError) as info:
        load({"APP_MOUNTS": raw}, cpus=1)
    message = str(info.value)
    assert message.startswith("APP_MOUNTS") and fragment in message, message
    assert "\n" not in message


def test_the_reserved_prefixes_are_the_servers_health_and_nginxs_static_files(app):
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/static/<path:filename>" in rules
    assert set(RESERVED_PREFIXES) == {*health.PATHS, "/static"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("/admin=app.no_such_module:application", "/admin=app.no_such_module:application cannot be loaded"),
        ("/admin=demo.admin:no_such_app", "/admin=demo.admin:no_such_app cannot be loaded: AttributeError"),
        ("/admin=demo.demo:DEFAULT_WORK_MS", "is not a WSGI app"),
    ],
)
def test_a_mount_that_cannot_be_loaded_stops_the_start_with_one_line(helpers, env_factory, raw, fragment):
    # As `make check` runs it, before anything running changes.
    result = helpers.run_python(["-m", "serving.check"], env_factory(APP_MOUNTS=raw))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: APP_MOUNTS: ") and fragment in lines[0], lines[0]


def test_the_check_prints_the_mount_table(helpers, env_factory):
    result = helpers.run_python(["-m", "serving.check"], env_factory(APP_MOUNTS=DEMO_MOUNTS))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["app_mounts"] == {
        "/admin": "demo.admin:application",
        "/plain": "demo.plain_wsgi:application",
    }


# --- in process ----------------------------------------------------------------------------


def layers(application) -> list[type]:
    """The middleware chain from the outside in, down to the first object
    that wraps nothing."""
    chain = []
    while application is not None:
        chain.append(type(application))
        application = getattr(application, "app", None)
    return chain


def test_nothing_mounted_puts_no_dispatcher_in_the_request_path(app):
    served = wrap(app, load({}, cpus=1), load_mounted(()))
    assert DispatcherMiddleware not in layers(served)
    assert layers(served)[-1] is type(app)


@pytest.fixture
def mounted(app):
    """A test client of the app with the demo's mounts, as gunicorn serves it
    (no metrics in process: the real gunicorn test below has them)."""
    server_settings = load({"APP_MOUNTS": DEMO_MOUNTS, "METRICS_PORT": "0"}, cpus=1)
    return Client(wrap(app, server_settings, load_mounted(server_settings.app_mounts)))


def test_each_prefix_reaches_its_app_with_its_prefix_in_script_name(mounted):
    root = mounted.get("/")
    assert root.status_code == 200 and root.json["service"] == "flask-concurrency"

    admin = mounted.get("/admin/")
    assert admin.status_code == 200, admin.text
    assert admin.json["app"] == "admin"
    assert admin.json["script_root"] == "/admin" and admin.json["path"] == "/"
    # url_for builds prefixed URLs, and they lead back to the same app.
    assert admin.json["links"] == {"self": "/admin/", "worker": "/admin/worker"}
    assert mounted.get(admin.json["links"]["worker"]).json["app"] == "admin"

    plain = mounted.get("/plain/")
    assert plain.status_code == 200
    assert plain.json == {"app": "plain", "script_name": "/plain", "path_info": "/", "links": {"self": "/plain/"}}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/no-such-page", 404),
        ("/plain/no-such-page", 404),
        ("/plain/fail", 500),
        ("/no-such-page", 404),
    ],
)
def test_errors_from_every_mounted_app_are_json_naming_the_request_id(mounted, path, status):
    response = mounted.get(path, headers={"X-Request-ID": REQUEST_ID})
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert response.json["error"]["status"] == status
    assert response.json["error"]["request_id"] == REQUEST_ID
    assert "Traceback" not in response.text


def test_a_mounted_app_gets_the_request_id_and_the_proxys_client_address(mounted):
    # The server's layers are outside the dispatcher: a request with a
    # malformed id gets a fresh one, and ProxyFix applies nginx's headers.
    response = mounted.get("/admin/missing", headers={"X-Request-ID": "bad id!"})
    made = response.json["error"]["request_id"]
    assert made != "bad id!" and len(made) == 32


def test_with_nothing_mounted_a_mount_prefix_is_the_root_apps_json_404(app):
    client = Client(wrap(app, load({"METRICS_PORT": "0"}, cpus=1), load_mounted(())))
    for path in ("/admin/", "/plain/"):
        response = client.get(path, headers={"X-Request-ID": REQUEST_ID})
        assert response.status_code == 404 and response.content_type == "application/json"
        assert response.json["error"]["request_id"] == REQUEST_ID


def test_the_json_500_of_a_plain_app_is_logged_with_its_traceback(caplog):
    def broken(environ, start_response):
        raise ValueError("deep-detail")

    client = Client(dispatch.guarded({"/broken": broken})["/broken"])
    with caplog.at_level("ERROR", logger="serving.errors"):
        response = client.get("/")
    assert response.status_code == 500 and "deep-detail" not in response.text
    assert "deep-detail" in caplog.text and "/broken" in caplog.text


# --- a real gunicorn, with metrics ----------------------------------------------------------


def test_metrics_count_each_mounted_apps_requests_under_its_label(gunicorn):
    from tests.unit.test_metrics import scrape_until

    sent = {"/": 4, "/admin/": 3, "/plain/": 5, "/plain/fail": 2}
    env = {"WORKER_CLASS": "gthread", "WEB_CONCURRENCY": "2", "APP_MOUNTS": DEMO_MOUNTS}
    with gunicorn("serving.wsgi:application", **env) as run:
        for path, count in sent.items():
            for _ in range(count):
                run.get(path)
        # The index request the fixture made to see it serving: one more for the root app.
        total = sum(sent.values()) + 1
        scrape = scrape_until(run.metrics_port, lambda s: s.value("flask_http_requests_total") == total)
    assert scrape.value("flask_http_requests_total", app="/", endpoint="/", status="200") == sent["/"] + 1
    assert scrape.value("flask_http_requests_total", app="/admin", endpoint="/", status="200") == sent["/admin/"]
    assert scrape.value("flask_http_requests_total", app="/plain", endpoint="*", status="200") == sent["/plain/"]
    assert scrape.value("flask_http_requests_total", app="/plain", endpoint="*", status="500") == sent["/plain/fail"]
    assert scrape.value("flask_http_request_duration_seconds_count", app="/plain") == 7
    assert scrape.value("flask_http_requests_in_flight") == 0
    assert {s.labels["app"] for s in scrape.samples if "app" in s.labels} == {"/", "/admin", "/plain"}
