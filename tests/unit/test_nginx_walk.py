"""The README's walk of `GET /` through nginx is the one nginx takes: its
configuration followed include by include from nginx/nginx.conf, without
Docker (tests/nginx_walk.py; a running nginx's `nginx -T` is checked against
the same walk in tests/integration/test_stack.py and test_tls.py)."""

from __future__ import annotations

import pytest

from harness.stack import REPO
from tests.nginx_walk import NGINX, readme_walk, walk

pytestmark = pytest.mark.unit


def test_the_readme_lists_the_files_nginx_reads_for_get_slash_over_plain_http():
    assert readme_walk() == [source for _, source in walk("http")]


def test_the_https_mode_reads_the_same_files_but_its_own_servers_and_tls():
    http, https = ({source for _, source in walk(mode)} for mode in ("http", "https"))
    assert http - https == {"nginx/templates/modes/http/servers.conf.template"}
    assert https - http == {"nginx/templates/modes/https/servers.conf.template", "nginx/snippets/tls.conf"}


def test_every_configuration_file_in_nginx_is_read_in_one_mode_or_the_other():
    read = {source for mode in ("http", "https") for _, source in walk(mode)}
    config = {
        path.relative_to(REPO).as_posix()
        for directory in ("conf.d", "snippets", "templates")
        for path in (NGINX / directory).rglob("*")
        if path.is_file()
    }
    assert config - read == set(), "files nothing includes"
