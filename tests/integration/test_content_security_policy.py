"""Whose security headers a response carries, against real nginx
(docs/security.md): nginx's own answers and the app's answers that send none
get the default Content-Security-Policy, or CONTENT_SECURITY_POLICY when it
is set; an answer whose app sends its own keeps the app's, once; a bad value
stops `make check` with one line naming it, and the running stack is left
as it was. The policies are read from where they are written
(tests/content_security_policy.py).

The demo app sends none of these headers, so the app that does is a scratch
copy of this one with two views added (OWN_HEADERS_VIEWS), built as a fork
is (harness.stack.app_build_context): the working tree's demo/ is never
touched. To check a real app that sends its own instead, point `own_stack`
at it and OWN_PAGE / OWN_HEADERS at one of its pages and the headers that
page sends."""

from __future__ import annotations

import http.client
import os
import subprocess

import pytest

from harness.browser import load
from harness.stack import REPO, Stack, app_build_context
from tests.content_security_policy import NAME, default_policy, docs_page, docs_policy

pytestmark = pytest.mark.integration

#: The three headers an app may send itself, nginx's defaults for them, and
#: the edge's own two, which are always nginx's.
PAGE_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy")
EDGE_HEADERS = ("X-Request-ID",)

#: A page whose app sends its own headers, and what it sends: the docs' page
#: under the default policy (so a browser refuses its CDN items and inline
#: script), and a Referrer-Policy other than nginx's.
OWN_PAGE = "/csp/own"
OWN_HEADERS = {
    "Content-Security-Policy": default_policy(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: A page whose app sends none of them: the docs' page as it is.
BARE_PAGE = "/csp/page"

OWN_HEADERS_VIEWS = f'''

# Added by tests/integration/test_content_security_policy.py to a scratch copy.
PAGE = {docs_page()!r}


@bp.get("{BARE_PAGE}")
def csp_page():
    return PAGE, 200, {{"Content-Type": "text/html; charset=utf-8"}}


@bp.get("{OWN_PAGE}")
def csp_own():
    return PAGE, 200, {{"Content-Type": "text/html; charset=utf-8", **{OWN_HEADERS!r}}}
'''


def answer(stack: Stack, path: str, host: str = "localhost") -> tuple[int, list[tuple[str, str]]]:
    """The status and every header line, duplicates kept (requests would
    join them into one)."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheaders()
    finally:
        connection.close()


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


#: nginx's own answers: a JSON 404 for a missing static file and for the
#: debugger's URL, a static file nginx serves itself, the JSON 421 for another
#: host name; and an answer of the app that sends no security header.
NGINX_OWN = [("/static/no-such-file.css", "localhost", 404), ("/console", "localhost", 404)]
NGINX_OWN += [("/static/demo.css", "localhost", 200), ("/", "evil.example", 421)]
APP_BARE = [("/", "localhost", 200)]


def assert_defaults(stack: Stack, policy: str, requests: list[tuple[str, str, int]]) -> None:
    for path, host, status in requests:
        got, headers = answer(stack, path, host)
        assert got == status, (path, host, got)
        assert values(headers, "Content-Security-Policy") == [policy], (path, host, headers)
        assert values(headers, "X-Content-Type-Options") == ["nosniff"], (path, host, headers)
        assert values(headers, "Referrer-Policy") == ["no-referrer"], (path, host, headers)
        for name in EDGE_HEADERS:
            assert len(values(headers, name)) == 1, (path, host, name, headers)


# --- the default stack, as make up starts it ------------------------------------


def test_nginxs_own_answers_and_the_apps_without_one_carry_the_default_policy(stack):
    assert_defaults(stack, default_policy(), NGINX_OWN + APP_BARE)


def test_the_demo_page_runs_under_the_default_policy_in_chromium(stack):
    # The default is strict but not in the way of the app's own page: its
    # stylesheet and script come from /static/ ('self').
    page = load(f"{stack.url}/demo")
    assert page.violations == [], page.violations
    assert "script loaded from" in page.dom, page.dom[:1000]


BAD_VALUES = [
    ('script-src "self"', "it holds a double quote"),
    ("default-src 'none';\nscript-src 'self'", "it holds a newline"),
    ("'self' https://cdn.jsdelivr.net", "does not start with a directive's name"),
    ("script-src $host", "it holds a dollar sign"),
]


@pytest.mark.parametrize(("value", "why"), BAD_VALUES, ids=["quote", "newline", "no-directive", "dollar"])
def test_a_bad_value_stops_make_check_with_one_line_and_the_stack_keeps_serving(stack, value, why):
    before = [c.id for c in (*stack.containers("app"), *stack.containers("nginx"))]
    result = subprocess.run(
        ["make", "check"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != NAME} | stack.cli_environment() | {NAME: value},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("configuration error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"configuration error: {NAME}='{value.replace(chr(10), chr(92) + 'n')}' is not valid: ")
    assert why in lines[0], lines
    assert [c.id for c in (*stack.containers("app"), *stack.containers("nginx"))] == before
    assert stack.get("/").status_code == 200


def test_an_empty_value_in_nginxs_environment_stops_its_start_with_one_line(stack):
    # Compose gives an empty CONTENT_SECURITY_POLICY the default (${...:-...});
    # a manifest that hands nginx an empty one (Kubernetes) is refused.
    result = stack.compose("run", "--rm", "--no-deps", "-T", "-e", f"{NAME}=", "nginx", "nginx", "-t", "-q")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("configuration error:")]
    assert lines == [
        f"configuration error: {NAME}='' is not valid: it names no directive; expected directives separated by ';' "
        "on one line, such as default-src 'none'; script-src 'self' (docs/security.md)"
    ], result.stderr[-2000:]


# --- CONTENT_SECURITY_POLICY set, and an app that sends its own -----------------


@pytest.fixture(scope="module")
def own_stack(built_images, tmp_path_factory):
    """One replica of a scratch copy of the app with OWN_HEADERS_VIEWS, behind
    nginx with the docs' CONTENT_SECURITY_POLICY line, set as a .env line is
    (the stack's env file)."""
    context = tmp_path_factory.mktemp("csp")
    overlay = app_build_context(context, "flask-concurrency-test/csp-app")
    views = context / "demo" / "views.py"
    views.write_text(views.read_text() + OWN_HEADERS_VIEWS)
    own = Stack("csp", overlays=(overlay,), APP_REPLICAS="1", **{NAME: docs_policy()})
    own.docker.compose.build(services=["app"], quiet=True)
    try:
        yield own.up()
    finally:
        own.down()


def test_the_setting_is_the_policy_of_nginxs_answers_and_the_apps_without_one(own_stack):
    assert_defaults(own_stack, docs_policy(), NGINX_OWN + APP_BARE + [(BARE_PAGE, "localhost", 200)])


def test_the_apps_own_headers_win_once_each(own_stack):
    status, headers = answer(own_stack, OWN_PAGE)
    assert status == 200
    for name in PAGE_HEADERS:
        assert values(headers, name) == [OWN_HEADERS[name]], (name, headers)
    for name in EDGE_HEADERS:
        assert len(values(headers, name)) == 1, (name, headers)


def test_in_chromium_the_setting_lets_the_page_run_and_the_apps_own_policy_wins(own_stack):
    # Through nginx, the docs' page as the app sends it bare: the docs' line
    # applies, nothing is refused and its inline script runs.
    bare = load(f"{own_stack.url}{BARE_PAGE}")
    assert bare.violations == [], bare.violations
    assert "data-bs-theme=" in bare.dom
    # The same page with the app's own, default, policy: the app's is the
    # one in force, and refuses the CDN stylesheet, script and inline script.
    own = load(f"{own_stack.url}{OWN_PAGE}")
    print(
        f"\nthrough nginx: {len(bare.violations)} violations under the setting, {len(own.violations)} under the app's"
    )
    assert len(own.violations) == 3, own.violations
    assert "data-bs-theme=" not in own.dom
