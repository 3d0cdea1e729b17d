"""CONTENT_SECURITY_POLICY: nginx's hook refuses a value nginx or a browser
would misread with one line naming it (run here as the image runs it, by
sh, without Docker), and every place that documents or repeats the default
says what docker-compose.yml, where it is written, says."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from bench.tune import compose as tune
from harness.stack import REPO
from tests.content_security_policy import DOCS, NAME, default_policy, docs_policy

pytestmark = pytest.mark.unit

HOOK = REPO / "nginx" / "docker-entrypoint.d" / "16-content-security-policy.sh"
EXPECTED = "expected directives separated by ';' on one line, such as default-src 'none'; script-src 'self'"


def run_hook(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != NAME}
    return subprocess.run(["sh", str(HOOK)], env=clean | env, capture_output=True, text=True, timeout=10, check=False)


@pytest.mark.parametrize(
    ("value", "shown", "why"),
    [
        ("", "", "it names no directive"),
        ("   ", "   ", "it names no directive"),
        (";;", ";;", "it names no directive"),
        ('script-src "self"', 'script-src "self"', "it holds a double quote, which would end nginx's string"),
        ("script-src \\'self'", "script-src \\'self'", "it holds a backslash, which nginx reads as an escape"),
        ("script-src $host", "script-src $host", "it holds a dollar sign, which nginx reads as a variable"),
        ("default-src 'none';\nscript-src 'self'", "default-src 'none';\\nscript-src 'self'", "it holds a newline"),
        ("default-src 'none'\n", "default-src 'none'\\n", "it holds a newline"),
        ("default-src\t'none'", "default-src?'none'", "it holds a control character or a byte outside ASCII"),
        (
            "default-src 'none'; script-src caf\u00e9.example",
            "default-src 'none'; script-src caf??.example",
            "it holds a control character or a byte outside ASCII",
        ),
        ("'self'", "'self'", "''self'' does not start with a directive's name"),
        ("https://cdn.jsdelivr.net", "https://cdn.jsdelivr.net", "'https://cdn.jsdelivr.net' does not start"),
        ("default-src 'self'; https://x.example", "default-src 'self'; https://x.example", "'https://x.example' does"),
        ("script-src self", "script-src self", "self in script-src needs its single quotes ('self')"),
        ("script-src 'self' sha256-abc=", "script-src 'self' sha256-abc=", "sha256-abc= in script-src needs its"),
    ],
)
def test_a_bad_value_stops_the_start_with_one_line_naming_it(value, shown, why):
    result = run_hook(**{NAME: value})
    assert result.returncode == 2, result
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"configuration error: {NAME}='{shown}' is not valid: "), line
    assert why is None or f"is not valid: {why}" in line, line
    assert line.endswith(f"; {EXPECTED} (docs/security.md)"), line
    assert result.stdout == ""


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(default_policy(), id="the-default"),
        pytest.param(docs_policy(), id="the-docs-line"),
        "default-src 'none';",
        "upgrade-insecure-requests; default-src 'self'",
        "default-src 'self'; report-uri /csp-reports; sandbox allow-scripts",
    ],
)
def test_a_good_value_passes_silently(value):
    result = run_hook(**{NAME: value})
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_unset_is_left_to_the_check_every_template_setting_gets():
    # 18-check-settings.sh says "CONTENT_SECURITY_POLICY is not set", as it
    # does for every variable a template uses.
    assert (run_hook().returncode, run_hook().stderr) == (0, "")
    template = (REPO / "nginx" / "templates" / "http.conf.template").read_text()
    assert f'"${{{NAME}}}"' in template
    (filter_,) = re.findall(r"NGINX_ENVSUBST_FILTER='([^']+)'", (REPO / "nginx" / "Dockerfile").read_text())
    assert re.fullmatch(filter_, NAME)


def test_the_docs_show_the_line_the_hook_prints():
    line = run_hook(**{NAME: 'script-src "self"'}).stderr.strip()
    assert f"\n{line}\n" in DOCS.read_text()


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_copy_of_the_default_is_docker_composes():
    default = default_policy()
    readme = re.findall(rf"^\| `{NAME}` \| `([^`]*)` \|", (REPO / "README.md").read_text(), flags=re.MULTILINE)
    assert readme == [default]
    assert f" Default {default}.\n#{NAME}=\n" in (REPO / ".env.example").read_text()
    assert f"`{default}`" in flat(DOCS.read_text())
    # The lab's nginx and make tune's run with the product's headers
    # (tests/unit/test_tune.py holds the two to each other; the Kubernetes
    # manifest is tests/unit/test_kubernetes.py's).
    assert tune.NGINX_ENV[NAME] == default
