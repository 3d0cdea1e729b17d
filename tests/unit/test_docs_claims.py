"""Claims the docs make about the configuration, read from the files that
make them true."""

from __future__ import annotations

import re

import pytest

from harness.stack import REPO
from serving.jsonlog import FIELDS

pytestmark = pytest.mark.unit


def nginx_access_log_fields() -> list[str]:
    """The JSON keys of nginx's `json_upstream` log_format, wherever in nginx/ it is."""
    for path in sorted((REPO / "nginx").rglob("*")):
        if path.is_file() and "log_format json_upstream" in (text := path.read_text(errors="replace")):
            block = text.split("log_format json_upstream", 1)[1].split(";", 1)[0]
            return re.findall(r'"(\w+)":', block)
    raise AssertionError("no log_format json_upstream in nginx/")


def test_nginx_access_log_shares_every_field_but_message_with_gunicorns_lines():
    fields = nginx_access_log_fields()
    assert set(FIELDS) - set(fields) == {"message"}
    assert {"method", "path", "status", "duration"} <= set(fields)
    observability = (REPO / "docs" / "observability.md").read_text()
    assert "it has no `message`" in observability
