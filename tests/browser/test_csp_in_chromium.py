"""What a Content-Security-Policy does to a page in a real browser: headless
Chromium (harness/browser.py) loads docs/security.md's example page (a CDN
stylesheet, a CDN script, one inline script) from a local http.server, under
nginx's default policy and under the docs' CONTENT_SECURITY_POLICY line,
both read from where they are written (tests/content_security_policy.py).

No Docker and no internet needed: a resource the policy refuses is refused
before any network, so violations are counted offline; one it allows just
fails to load here, which is no violation."""

from __future__ import annotations

import contextlib
import http.server
import re
import subprocess
import threading
from collections.abc import Iterator

import pytest

from harness.browser import Page, load
from harness.stack import REPO
from tests.content_security_policy import (
    DOCS,
    default_policy,
    docs_hash_command,
    docs_page,
    docs_policy,
    off_site,
    page_items,
    sha256_source,
)

pytestmark = pytest.mark.browser

#: The docs' inline script sets this on <html> when it runs.
RAN = re.compile(r"<html[^>]* data-bs-theme=\"(dark|light)\"")


@contextlib.contextmanager
def serve(page: str, policy: str | None) -> Iterator[str]:
    """`page` at / of a server on 127.0.0.1 (a free port the kernel picks),
    with `policy` as its Content-Security-Policy header (none if None);
    anything else (the browser's favicon) a 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/":
                self.send_error(404)
                return
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if policy is not None:
                self.send_header("Content-Security-Policy", policy)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def load_with(page: str, policy: str | None) -> Page:
    with serve(page, policy) as url:
        return load(url)


@pytest.fixture(scope="module")
def under_default() -> Page:
    """The docs' page under nginx's default policy."""
    return load_with(docs_page(), default_policy())


# --- the harness itself ---------------------------------------------------------

CONTROL_PAGE = '<!doctype html>\n<html><body><script>document.body.dataset.ran = "yes";</script></body></html>\n'


def test_the_harness_sees_a_refused_inline_script_and_a_clean_page_as_clean():
    # Positive control: a policy that refuses the one inline script is one
    # violation, and the script did not run.
    refused = load_with(CONTROL_PAGE, "script-src 'none'")
    assert len(refused.violations) == 1, refused.console
    assert "inline script" in refused.violations[0]
    assert 'data-ran="yes"' not in refused.dom
    # Without a policy: no violation, and the script ran.
    allowed = load_with(CONTROL_PAGE, None)
    assert allowed.violations == [], allowed.violations
    assert 'data-ran="yes"' in allowed.dom


# --- the docs' page -------------------------------------------------------------


def test_the_default_policy_refuses_the_cdn_stylesheet_the_cdn_script_and_the_inline_script(under_default):
    items = page_items(docs_page())
    stylesheets = [url for url in items.stylesheets if off_site(url)]
    scripts = [url for url in items.scripts if off_site(url)]
    blocked = len(stylesheets) + len(scripts) + len(items.inline_scripts)
    # The page is what the docs say: one of each.
    assert (len(stylesheets), len(scripts), len(items.inline_scripts)) == (1, 1, 1)
    print(f"\ndefault policy: {len(under_default.violations)} violations for {blocked} blocked items")
    for message in under_default.violations:
        print(f"  {message[:160]}")
    assert len(under_default.violations) == blocked == 3, under_default.violations
    # Each refusal is one of the page's items, each item refused once.
    for url in stylesheets:
        assert sum("stylesheet" in m and url in m for m in under_default.violations) == 1, url
    for url in scripts:
        assert sum("the script" in m and url in m for m in under_default.violations) == 1, url
    assert sum("inline script" in m for m in under_default.violations) == len(items.inline_scripts)
    # So the page's script never ran.
    assert not RAN.search(under_default.dom)


def test_the_docs_line_lets_the_whole_page_run_with_no_violation():
    page = load_with(docs_page(), docs_policy())
    print(f"\nthe docs' CONTENT_SECURITY_POLICY: {len(page.violations)} violations")
    assert page.violations == [], page.violations
    # Not silence for another reason: the inline script ran.
    assert RAN.search(page.dom), page.dom[:500]


def test_the_docs_line_keeps_the_rest_of_the_default():
    # Every directive of the default is in the docs' line, changed only by
    # what the page needs: the CDN's path, and the inline script's hash.
    default = dict(part.strip().split(" ", 1) for part in default_policy().split(";"))
    docs = dict(part.strip().split(" ", 1) for part in docs_policy().split(";"))
    assert docs.keys() == default.keys()
    (script,) = page_items(docs_page()).inline_scripts
    cdn = "https://cdn.jsdelivr.net/npm/bootstrap@5.3.3/"
    added = {"script-src": f" {cdn} {sha256_source(script)}", "style-src": f" {cdn}"}
    assert docs == {name: value + added.get(name, "") for name, value in default.items()}


def test_the_docs_hash_is_what_openssl_and_chromium_compute(under_default):
    (script,) = page_items(docs_page()).inline_scripts
    expected = sha256_source(script)
    assert expected in docs_policy()
    # The docs' openssl command, as a reader runs it.
    subprocess.run([str(REPO / "scripts" / "ensure-packages.sh"), "openssl"], check=True, timeout=600)
    printed = subprocess.run(["bash", "-c", docs_hash_command()], capture_output=True, text=True, check=True).stdout
    assert f"'sha256-{printed.strip()}'" == expected
    # And the docs say what it prints.
    assert f"prints `{printed.strip()}`" in DOCS.read_text()
    # Chromium's refusal names the hash it would have accepted.
    (inline,) = [m for m in under_default.violations if "inline script" in m]
    assert f"({expected})" in inline, inline


def test_unsafe_inline_beside_a_hash_is_ignored_so_only_the_hash_counts():
    # docs/security.md: adding 'unsafe-inline' next to a hash allows nothing
    # more. Here the hash is another script's: the page's is still refused.
    other = sha256_source("console.log('another script');")
    page = load_with(docs_page(), f"default-src 'none'; script-src 'unsafe-inline' {other}")
    assert [m for m in page.violations if "inline script" in m], page.violations
    assert not RAN.search(page.dom)
