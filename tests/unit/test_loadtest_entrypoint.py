"""loadtest/entrypoint.py's choice of who locust runs as, and where the
reports are said to be: the parts that need no container."""

from __future__ import annotations

import importlib.util
import itertools
import sys

import pytest

from harness.stack import REPO

pytestmark = pytest.mark.unit

_spec = importlib.util.spec_from_file_location("loadtest_entrypoint", REPO / "loadtest" / "entrypoint.py")
entrypoint = importlib.util.module_from_spec(_spec)
# Registered first: its dataclass looks its module up.
sys.modules[_spec.name] = entrypoint
_spec.loader.exec_module(entrypoint)
Identity = entrypoint.Identity


def test_locust_takes_the_reports_directorys_owner():
    assert entrypoint.identity("headless", (1000, 1000)) == Identity(1000, 1000)
    assert entrypoint.identity("ui", (1234, 5678)) == Identity(1234, 5678)
    # A group of root's is not taken: the owner's uid stands for it.
    assert entrypoint.identity("headless", (1000, 0)) == Identity(1000, 1000)


def test_a_directory_of_roots_gets_the_images_user_and_its_reports_collected_by_root():
    assert entrypoint.identity("headless", (0, 0)) == Identity(10001, 10001, collect=True)
    assert entrypoint.identity("ui", (0, 1000)) == Identity(10001, 10001, collect=True)


def test_a_worker_or_a_missing_directory_gets_the_images_user():
    assert entrypoint.identity("worker", (1000, 1000)) == Identity(10001, 10001)
    assert entrypoint.identity("headless", None) == Identity(10001, 10001)


def test_locust_never_runs_as_root_whoever_owns_the_directory():
    owners = [None, *itertools.product((0, 1, 1000, 10001, 65534), (0, 1, 1000))]
    for role, owner in itertools.product(("headless", "ui", "worker"), owners):
        who = entrypoint.identity(role, owner)
        assert who.uid != 0 and who.gid != 0, (role, owner, who)


def test_the_reports_are_named_as_the_host_names_them(monkeypatch):
    monkeypatch.delenv("LOADTEST_REPORTS_DIR", raising=False)
    assert entrypoint.shown("loadtest-X") == "./loadtest/reports/loadtest-X"
    monkeypatch.setenv("LOADTEST_REPORTS_DIR", "/home/me/app/loadtest/reports/")
    assert entrypoint.shown("loadtest-X") == "/home/me/app/loadtest/reports/loadtest-X"


def test_a_second_run_in_the_same_second_gets_a_name_of_its_own(tmp_path):
    first = entrypoint.report_name(str(tmp_path))
    (tmp_path / f"{first}.html").write_text("")
    second = entrypoint.report_name(str(tmp_path))
    assert second.startswith(first) and second != first


def test_root_collects_this_runs_reports_and_only_them(tmp_path, monkeypatch):
    scratch, reports = tmp_path / "scratch", tmp_path / "reports"
    scratch.mkdir()
    reports.mkdir()
    monkeypatch.setattr(entrypoint, "SCRATCH", str(scratch))
    monkeypatch.setattr(entrypoint, "REPORTS", str(reports))
    for name in ("loadtest-A.html", "loadtest-A_stats.csv", "loadtest-A_summary.json", "other.txt"):
        (scratch / name).write_text(name)
    entrypoint.collect("loadtest-A")
    assert sorted(p.name for p in reports.iterdir()) == [
        "loadtest-A.html",
        "loadtest-A_stats.csv",
        "loadtest-A_summary.json",
    ]
    assert (reports / "loadtest-A.html").read_text() == "loadtest-A.html"
