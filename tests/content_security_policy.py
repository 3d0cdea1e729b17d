"""The Content-Security-Policy as the repository writes it, read from where
it is written, never retyped: nginx's default from docker-compose.yml, and
docs/security.md's example page, its CONTENT_SECURITY_POLICY line and its
openssl command, between their <!-- csp-... --> markers."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import yaml

from harness.stack import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCS = REPO / "docs" / "security.md"
NAME = "CONTENT_SECURITY_POLICY"


def default_policy() -> str:
    """docker-compose.yml's default: nginx's `${CONTENT_SECURITY_POLICY:-...}`."""
    raw = yaml.safe_load(COMPOSE.read_text())["services"]["nginx"]["environment"][NAME]
    match = re.fullmatch(rf"\$\{{{NAME}:-(.+)\}}", raw)
    assert match, f"docker-compose.yml: nginx's {NAME} is not ${{{NAME}:-default}}: {raw!r}"
    return match[1]


def docs_block(marker: str) -> str:
    """The fenced code block between <!-- marker --> and <!-- /marker --> in
    docs/security.md, without its fences and final newline."""
    found = re.findall(
        rf"^<!-- {marker} -->\n```[a-z]*\n(.*?)\n```\n<!-- /{marker} -->$", DOCS.read_text(), re.MULTILINE | re.DOTALL
    )
    assert len(found) == 1, f"docs/security.md: {len(found)} blocks marked {marker}"
    return found[0]


def docs_page() -> str:
    """The example page: a CDN stylesheet, a CDN script, one inline script."""
    return docs_block("csp-page") + "\n"


def docs_policy() -> str:
    """The value of the docs' `CONTENT_SECURITY_POLICY=...` line for that page."""
    (line,) = docs_block("csp-line").splitlines()
    name, _, value = line.partition("=")
    assert name == NAME, line
    return value


def docs_hash_command() -> str:
    """The docs' openssl command that prints the inline script's hash."""
    return docs_block("csp-hash")


def sha256_source(script: str) -> str:
    """The CSP source expression that allows this inline script's text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


class _Items(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stylesheets: list[str] = []
        self.scripts: list[str] = []
        self.inline_scripts: list[str] = []
        self._inline = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(attributes["href"])
        elif tag == "script" and "src" in attributes:
            self.scripts.append(attributes["src"])
        elif tag == "script":
            self._inline = True
            self.inline_scripts.append("")
        assert tag != "style" and "style" not in attributes, "the page's count knows no inline style"

    def handle_data(self, data):
        if self._inline:
            self.inline_scripts[-1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._inline = False


def page_items(page: str) -> _Items:
    """What a page loads and runs: its stylesheets' and scripts' URLs, and
    its inline scripts' texts."""
    items = _Items()
    items.feed(page)
    items.close()
    return items


def off_site(url: str) -> bool:
    """A URL on another origin than the page's: what 'self' does not cover."""
    return bool(urlsplit(url).netloc)
