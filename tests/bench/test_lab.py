"""The concurrency lab's own correctness, through its quick mode (`make bench
QUICK=1`): every configuration started and served every workload without
errors, the development servers were reachable only inside the lab, the
output files were written and parse, and nothing was left running (the
HTTPS configuration's throwaway key included).

The figures of a quick run on a shared machine mean little, so speed is not
checked here, not even the quick mode's own duration: a wall-time bound is a
benchmark's figure (results.json's `meta.elapsed_s`, printed below), not a
test's assertion. The docs' figures come from the full mode.
"""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from bench.lab import TLS_ROOT
from bench.matrix import CONFIGS, workloads
from harness.stack import REPO, base_images

#: What the quick mode runs: one Apache configuration of the three, every other one.
QUICK_CONFIGS = tuple(c for c in CONFIGS if c.quick)

pytestmark = pytest.mark.bench

#: Its own project name, so that a `make bench` running meanwhile is untouched.
PROJECT = "flask-concurrency-bench-test"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # The base images first, outside the timing: on a fresh machine the
    # lab's Apache stand-in is built once here (about 45 s), a set-up step
    # like the others' stand-ins, which `make lint`'s compose call builds.
    base_images("bench")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--project", PROJECT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.monotonic() - started
    # Shown by pytest -rA / on failure: the lab's own progress lines, and its time.
    print(result.stderr[-6000:])
    print(f"the quick lab took {elapsed:.0f} s, its images' builds included")
    return {"out": out, "result": result, "elapsed": elapsed}


@pytest.fixture(scope="module")
def results(lab):
    assert lab["result"].returncode == 0, lab["result"].stderr[-3000:]
    return json.loads((lab["out"] / "results.json").read_text())


def test_every_configuration_served_every_workload_without_errors(results):
    assert results["meta"]["profile"]["quick"] is True
    served = {(r["config"], r["workload"]): r for r in results["runs"]}
    for workload in workloads(quick=True):
        for config in QUICK_CONFIGS:
            if not config.runs(workload.key):
                continue
            run = served.get((config.key, workload.key))
            assert run is not None, f"{config.key} did not run {workload.key}"
            assert run["requests"] > 0, f"{config.key} answered nothing on {workload.key}"
            assert run["errors_total"] == 0, f"{config.key} on {workload.key}: {run['errors']}"
    assert {c["key"] for c in results["configs"]} == {c.key for c in QUICK_CONFIGS}
    assert [c.key for c in QUICK_CONFIGS if c.family == "apache+gunicorn"] == ["apache-gthread"]


def test_a_static_file_from_nginx_outruns_healthz_through_gunicorn_on_the_same_nginx(results):
    # Side by side in the same pass: a file from nginx's disk costs no
    # upstream round trip and no Python, so even CI's 1 s runs tell them apart.
    (ratio,) = [r for r in results["ratios"] if r["group"].startswith("a static file from nginx")]
    assert ratio["name"] == "nginx-gthread" and ratio["median"] > 1, ratio


def test_each_app_server_reports_the_settings_the_table_states(results):
    described = results["described"]
    for cls in ("sync", "gthread", "gevent"):
        effective = described[f"gunicorn-{cls}"]["effective"]
        assert effective["worker_class"] == cls
        assert effective["workers"] == 3
    assert described["gunicorn-gthread"]["effective"]["threads"] == 4
    assert described["nginx-uwsgi-threads"]["effective"]["UWSGI_PROCESSES"] == "3"
    assert described["nginx-uwsgi-threads"]["effective"]["UWSGI_THREADS"] == "4"
    for key in ("granian", "nginx-granian"):
        granian = described[key]["effective"]
        assert (granian["GRANIAN_WORKERS"], granian["GRANIAN_BLOCKING_THREADS"]) == ("3", "4")
        assert granian["GRANIAN_INTERFACE"] == "wsgi"
    assert "--no-threaded" in described["dev-single"]["effective"]["command"]
    # Apache as it reports itself: httpd 2.4, the event MPM, the proxy modules loaded.
    apache = described["apache-gthread"]["front_effective"]
    assert apache["version"].startswith("Apache/2.4.") and apache["mpm"] == "event", apache
    assert {"proxy_module", "proxy_http_module", "reqtimeout_module"} <= set(apache["modules"]), apache
    assert apache["ThreadsPerChild"] == "256", apache


def test_dev_servers_were_reachable_only_inside_the_lab(results):
    isolation = results["isolation"]
    assert set(isolation) == {"dev-single", "dev-threaded", "dev-processes"}
    for key, dev in isolation.items():
        # In the namespace of their own generator, which has no network.
        assert dev["network_mode"].startswith("container:"), key
        assert dev["holder_network_mode"] == "none", key
        assert dev["networks"] == [] and dev["addresses"] == [], key
        assert dev["interfaces"] == ["lo"], key
        # Nothing published, nothing listening beyond loopback.
        assert dev["port_bindings"] == {} and dev["published_ports"] == {}, key
        assert dev["listening"] and all(s.startswith("127.0.0.1:") for s in dev["listening"]), key
        # And the same port on the host's loopback answers nothing.
        assert dev["reachable_from_host"] is False, key


def test_the_output_files_were_written_and_parse(lab, results):
    out = lab["out"]
    with (out / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results["runs"])
    assert all(float(row["rps"]) > 0 for row in rows)
    with (out / "summary.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(results["summary"])
    markdown = (out / "results.md").read_text()
    assert "| configuration |" in markdown
    for config in QUICK_CONFIGS:
        assert config.label in markdown
    assert results["targets"] and results["ratios"]
    for name in ("throughput.png", "latency.png"):
        width, height = png_size(out / name)
        assert width > 300 and height > 300, name


def test_nothing_was_left_running(lab):
    for kind in ("ps", "network ls"):
        leftover = subprocess.run(
            [
                "docker",
                *kind.split(),
                "-aq" if kind == "ps" else "-q",
                "--filter",
                f"label=com.docker.compose.project={PROJECT}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert leftover == [], f"docker {kind}: {leftover}"
    # Nor the HTTPS configuration's throwaway key.
    assert not (TLS_ROOT / PROJECT).exists()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, after checking its chunks and image data."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name}: not a PNG"
    offset, chunks, idat = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path.name}: bad CRC in {kind!r}"
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", f"{path.name}: chunks {chunks[:3]}…"
    assert zlib.decompress(idat), f"{path.name}: empty image data"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
