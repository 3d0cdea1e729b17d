"""The lab's pure parts, without Docker: reading CPU counters, the load
generators' output, the CPU figures of a run, and the plan the options make.
The lab as a whole is test_lab.py's subject (`-m bench`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import stat
import subprocess
from dataclasses import asdict

import pytest

from bench import cpu, generators, report
from bench.__main__ import DEFAULT_OUT, commit, main, parse_args, plan_runs, select, uncommitted_changes
from bench.lab import served_share, write_tls_files
from bench.matrix import CONFIGS_BY_KEY, workloads
from harness.stack import REPO

pytestmark = pytest.mark.unit


class NoDocker:
    """Fails the test if the fast path asks Docker anything."""

    def __getattr__(self, name):
        raise AssertionError(f"docker.{name} used although the cgroup file was readable")


def test_cgroup_counters_of_both_versions_read_as_nanoseconds(tmp_path):
    assert cpu.parse_cgroup_cpu_ns("123456789\n") == 123456789  # v1 cpuacct.usage
    assert cpu.parse_cgroup_cpu_ns("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n") == 1_500_000  # v2 cpu.stat
    assert cpu.parse_cgroup_cpu_ns("nr_periods 0\n") is None
    counter = tmp_path / "cpu.stat"
    counter.write_text("usage_usec 42\n")
    assert cpu.container_cpu_ns(NoDocker(), "abc", counter) == 42_000
    assert cpu.read_cgroup_cpu_ns(tmp_path / "missing") is None


def test_a_runs_cpu_figures_come_from_the_counters_around_it():
    config = CONFIGS_BY_KEY["nginx-gthread"]
    services = config.all_services()
    before = cpu.Snapshot(
        at=10.0, cpu_ns=dict.fromkeys(services, 0), worker_ticks={"7": 0, "8": 0}, hz=100, host_busy=0.0
    )
    after = cpu.Snapshot(
        at=12.0,
        cpu_ns={config.generator: 1e9, config.app_service: 2e9, config.front_service: None},
        worker_ticks={"7": 150, "8": 50},
        hz=100,
        host_busy=4.0,
    )
    figures = cpu.measure(config, before, after, load_seconds=2.0, requests=1000)
    assert figures["generator_cpu"] == 0.5 and figures["app_cpu"] == 1.0 and figures["front_cpu"] is None
    assert figures["app_cpu_ms_per_request"] == 2.0 and "front_cpu_ms_per_request" not in figures
    assert figures["host_busy"] == 2.0 and figures["other_cpu"] == 0.5
    assert figures["worker_cpu_s"] == [1.5, 0.5] and figures["busiest_worker_share"] == 0.75


def test_wrk_output_becomes_the_runs_figures():
    raw = {
        "requests": 2000,
        "duration_us": 4_000_000,
        "errors": {"connect": 0, "status": 1},
        "latency_us": {"p50": 1000, "p90": 2000, "p99": 3000, "p999": 4000, "max": 5000, "mean": 1500},
    }
    result = generators.parse_wrk(f"Running 4s test\nBENCH_JSON {json.dumps(raw)}\n", connections=8)
    assert result["rps"] == 500 and result["seconds"] == 4 and result["connections"] == 8
    assert result["latency_ms"]["p99"] == 3 and result["errors"] == {"connect": 0, "status": 1}
    assert served_share(result, 8) == pytest.approx(500 * 0.0015 / 8)
    assert generators.parse_wrk("wrk: connection refused\n", connections=8) is None
    command = generators.wrk_command("http://app:8000/healthz", connections=1, seconds=4)
    assert command[:4] == ["wrk", "-t1", "-c1", "-d4s"] and command[-1] == "http://app:8000/healthz"


def test_locust_summary_becomes_wrk_like_figures():
    def entry(name, times, failures=0):
        return {
            "name": name,
            "num_requests": sum(times.values()),
            "num_failures": failures,
            "response_times": times,
            "start_time": 100.0,
            "last_request_timestamp": 110.0,
            "total_response_time": sum(float(ms) * n for ms, n in times.items()),
            "max_response_time": max(float(ms) for ms in times),
        }

    stats = [entry("/healthz", {"2": 90, "3": 9}), entry("/work/io", {"100": 1}, failures=1)]
    result = generators.summarize_locust(stats, users=200, seconds=4)
    assert result["requests"] == 100 and result["seconds"] == 10 and result["rps"] == 10
    assert result["errors"] == {"failures": 1} and result["connections"] == 200
    assert result["latency_ms"]["p50"] == 2 and result["latency_ms"]["p99"] == 3 and result["latency_ms"]["max"] == 100
    assert result["endpoints"]["/work/io"] == {"requests": 1, "failures": 1, "p50_ms": 100, "p99_ms": 100}
    assert generators.summarize_locust([], users=200, seconds=4)["seconds"] == 4.0


def test_each_pass_runs_the_configurations_in_a_different_order():
    selection = select(parse_args(["--configs", "gunicorn-sync,gunicorn-gthread,gunicorn-gevent", "--workloads", "io"]))
    plan = plan_runs(selection)
    assert [w.key for _, w, _ in plan] == ["io"] * 9
    firsts = [config.key for _, _, config in plan[::3]]
    assert len(set(firsts)) == 3, firsts


def test_an_unknown_configuration_fails_before_anything_starts(capsys):
    assert main(["--configs", "gunicorn-sync,nope"]) == 2
    assert "unknown configuration(s): nope" in capsys.readouterr().err


def git_checkout(path):
    """A repository of one committed file, clean."""
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (path / "app.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "app.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    return path


def test_a_changed_or_untracked_file_makes_the_tree_uncommitted(tmp_path):
    repo = git_checkout(tmp_path)
    assert uncommitted_changes(repo) == []
    assert "+" not in commit(repo)
    (repo / "app.py").write_text("x = 2\n")
    assert uncommitted_changes(repo) == [" M app.py"]
    assert commit(repo).endswith("+changes")
    (repo / "app.py").write_text("x = 1\n")
    (repo / "new.py").write_text("")
    assert uncommitted_changes(repo) == ["?? new.py"]
    assert uncommitted_changes(tmp_path / "nowhere") is None


def test_the_lab_refuses_to_write_the_docs_figures_from_an_uncommitted_tree(monkeypatch, capsys):
    import bench.__main__ as lab_main

    def must_not_run(*args):
        raise AssertionError("the lab started")

    monkeypatch.setattr(lab_main, "run_lab", must_not_run)
    monkeypatch.setattr(lab_main, "uncommitted_changes", lambda repo=REPO: [" M serving/app.py"])
    assert main([]) == 2
    assert main(["--configs", "apache"]) == 2  # a merge into the docs' figures, too
    assert main(["--out", str(DEFAULT_OUT)]) == 2
    err = capsys.readouterr().err
    assert "not writing docs/benchmarks/ from a tree with uncommitted changes ( M serving/app.py)" in err
    monkeypatch.setattr(lab_main, "uncommitted_changes", lambda repo=REPO: None)
    assert main([]) == 2
    assert "git cannot name the commit measured" in capsys.readouterr().err


def test_the_lab_measures_an_uncommitted_tree_into_another_directory_or_a_clean_one_into_the_docs(
    monkeypatch, tmp_path
):
    import bench.__main__ as lab_main

    started = []
    monkeypatch.setattr(lab_main, "run_lab", lambda args, selection: started.append(selection.out_dir) or 0)
    monkeypatch.setattr(lab_main, "uncommitted_changes", lambda repo=REPO: [" M serving/app.py"])
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--quick"]) == 0
    monkeypatch.setattr(lab_main, "uncommitted_changes", lambda repo=REPO: [])
    assert main([]) == 0
    assert started == [tmp_path.resolve(), lab_main.QUICK_OUT.resolve(), DEFAULT_OUT.resolve()]


def test_figures_from_an_uncommitted_tree_say_so_where_they_are_published():
    assert "**not a commit**" in report._commit("e8a43f4+changes")
    assert "**not a commit**" in report._commit("?")
    assert report._commit("e8a43f4") == "`e8a43f4`"


def test_the_https_configuration_differs_from_nginx_gthread_only_in_its_front():
    plain, tls = CONFIGS_BY_KEY["nginx-gthread"], CONFIGS_BY_KEY["nginx-gthread-tls"]
    assert tls.base_url == "https://nginx-gthread-tls:8443"
    assert tls.app_service == plain.app_service and tls.generator == plain.generator
    assert tls.front_service == "nginx-gthread-tls" != plain.front_service
    assert tls.runs("fast") and not tls.runs("io")


def test_the_https_ratio_is_paired_pass_by_pass():
    def run(rep, config, workload, rps):
        return {"rep": rep, "config": config, "workload": workload, "rps": rps}

    runs = [
        run(1, "nginx-gthread", "fast", 4000),
        run(1, "nginx-gthread-tls", "fast", 3000),
        run(2, "nginx-gthread", "fast", 2000),
        run(2, "nginx-gthread-tls", "fast", 1800),
        # Without its plain partner in the same pass: not counted.
        run(3, "nginx-gthread-tls", "fast", 5000),
    ]
    (ratio,) = [r for r in report.ratios(runs, ()) if r["group"].startswith("HTTPS / plain HTTP")]
    assert ratio["name"] == "fast" and ratio["n"] == 2
    assert (ratio["min"], ratio["max"]) == (0.75, 0.9)
    assert ratio["median"] == pytest.approx(0.825)


def test_the_labs_certificate_is_what_nginx_reads(tmp_path):
    directory = tmp_path / "tls"
    write_tls_files(directory, ["nginx-gthread-tls"])
    cert, key = directory / "cert.pem", directory / "key.pem"
    # nginx runs as uid 101, not the file's owner.
    for path in (cert, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    # PEM, and the key is the certificate's (this raises otherwise).
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)


def test_each_nginx_settings_variant_still_applies_to_the_projects_nginx(tmp_path):
    # The image's /etc/nginx is the repository's nginx/ (nginx/Dockerfile).
    from bench.nginx_settings import VARIANTS, apply_variant

    for name, edits in VARIANTS.items():
        etc = tmp_path / str(abs(hash(name)))
        shutil.copytree(REPO / "nginx", etc)
        apply_variant(etc, edits)
        for relative, _, new in edits:
            assert new in (etc / relative).read_text(), name
    with pytest.raises(ValueError, match="not there exactly once"):
        apply_variant(etc, [("nginx.conf", "worker_processes 7;", "")])


def test_the_unix_socket_configurations_differ_from_tcp_only_in_their_front():
    for worker_class in ("gthread", "gevent"):
        tcp, unix = CONFIGS_BY_KEY[f"nginx-{worker_class}"], CONFIGS_BY_KEY[f"nginx-{worker_class}-unix"]
        assert unix.app_service == tcp.app_service and unix.generator == tcp.generator
        assert unix.front_service == f"nginx-{worker_class}-unix" != tcp.front_service
    # Their nginx is the project's, with the upstream's server line replaced at build time.
    dockerfile = (REPO / "bench/unix-socket-nginx/Dockerfile").read_text()
    assert "include /tmp/nginx/app-servers.conf;" in (REPO / "nginx/conf.d/app.conf").read_text()
    assert "s#include /tmp/nginx/app-servers.conf;#server unix:/run/gunicorn/gunicorn.sock" in dockerfile


def test_the_drain_waits_for_connections_in_the_listen_queue():
    from bench.lab import _accept_queued

    proc_net_tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:1F40 00000000:0000 0A 00000000:000001B8 00:00000000 00000000 10001 0 1 1\n"
        "   1: 020018AC:1F40 030018AC:D2F0 01 00000000:00000040 00:00000000 00000000 10001 0 2 1\n"
        "   2: 00000000:238C 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001 0 3 1\n"
    )
    # 0x1B8 = 440 waiting on :8000; an accepted connection's unread bytes do not count.
    assert _accept_queued(proc_net_tcp) == 440
    assert _accept_queued(proc_net_tcp.replace("000001B8", "00000000")) == 0


def test_every_lab_server_that_names_a_password_file_mounts_it(tmp_path):
    # A server started with DATABASE_PASSWORD_FILE but without the secret
    # stops at start ("cannot be read"), and the lab waits for it in vain.
    rendered = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            "docker-compose.yml",
            "-f",
            "bench/compose.yml",
            "-p",
            "lab-config-check",
            "--profile",
            "bench",
            "config",
            "--format",
            "json",
        ],
        cwd=REPO,
        env={**os.environ, "BENCH_TLS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    services = json.loads(rendered.stdout)["services"]
    named = {
        name: service["environment"]["DATABASE_PASSWORD_FILE"]
        for name, service in services.items()
        if "bench" in service.get("profiles", []) and (service.get("environment") or {}).get("DATABASE_PASSWORD_FILE")
    }
    assert set(named) >= {"gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent"}
    for name, path in named.items():
        targets = (s.get("target") or s["source"] for s in services[name].get("secrets", []))
        mounted = {t if t.startswith("/") else f"/run/secrets/{t}" for t in targets}
        assert path in mounted, f"{name} names {path} but mounts {sorted(mounted) or 'no secret'}"


# --- Apache in the lab -----------------------------------------------------------


def test_naming_apache_selects_its_configurations_and_the_nginx_ones_its_ratios_pair_with():
    selection = select(parse_args(["--configs", "apache"]))
    keys = [c.key for c in selection.configs]
    assert sorted(keys) == sorted(
        ["apache-sync", "apache-gthread", "apache-gevent", "nginx-sync", "nginx-gthread", "nginx-gevent"]
    )
    assert selection.partners == ("nginx-sync", "nginx-gthread", "nginx-gevent")
    # The family's name and one key select the same way; a partner named itself is no partner.
    assert [c.key for c in select(parse_args(["--configs", "apache+gunicorn"])).configs] == keys
    assert [c.key for c in select(parse_args(["--configs", "apache-sync"])).configs] == ["nginx-sync", "apache-sync"]
    assert select(parse_args(["--configs", "apache-sync,nginx-sync"])).partners == ()
    # The partners run only what the Apache configurations run (not nginx's database or static workloads).
    planned = {(w.key, c.key) for _, w, c in plan_runs(selection)}
    assert {w for w, c in planned if c == "nginx-gthread"} == {"fast", "io", "cpu", "mix"}
    assert {w for w, c in planned if c == "apache-gthread"} == {"fast", "io", "cpu", "mix"}


def test_the_quick_mode_runs_one_apache_configuration_unless_told_otherwise():
    quick = [c.key for c in select(parse_args(["--quick"])).configs]
    assert [k for k in quick if k.startswith("apache-")] == ["apache-gthread"]
    assert "nginx-sync" in quick and "gunicorn-gevent" in quick
    asked = [c.key for c in select(parse_args(["--quick", "--configs", "apache"])).configs]
    assert [k for k in asked if k.startswith("apache-")] == ["apache-sync", "apache-gthread", "apache-gevent"]
    full = [c.key for c in select(parse_args([])).configs]
    assert [k for k in full if k.startswith("apache-")] == ["apache-sync", "apache-gthread", "apache-gevent"]


def _run(session, rep, config, workload, rps, front_ms=None):
    return {
        "session": session,
        "rep": rep,
        "config": config,
        "workload": workload,
        "rps": rps,
        "front_cpu_ms_per_request": front_ms,
        "latency_ms": {"p50": 1, "p90": 1, "p99": 1, "max": 1},
        "requests": 100,
        "errors_total": 0,
    }


def test_ratios_pair_runs_of_the_same_session_and_pass_only():
    runs = [
        _run("A", 1, "nginx-sync", "fast", 1000, 0.10),
        _run("A", 1, "apache-sync", "fast", 800, 0.20),
        # Pass 1 of another session: not paired with session A's pass 1.
        _run("B", 1, "apache-sync", "fast", 9000, 0.90),
    ]
    (ratio,) = [r for r in report.ratios(runs, ()) if r["group"] == report.APACHE_GROUP]
    assert ratio["name"] == "sync, fast" and ratio["n"] == 1 and ratio["median"] == pytest.approx(0.8)
    (cpu,) = [r for r in report.ratios(runs, ()) if r["group"] == report.APACHE_CPU_GROUP]
    assert cpu["median"] == pytest.approx(2.0)


PROXY_COST = "proxy cost: nginx → gunicorn vs gunicorn direct"


def _results(session, date, commit, configs, runs, partners=()):
    return {
        "meta": {
            "session": session,
            "date": date,
            "commit": commit,
            "elapsed_s": 600,
            "profile": {"name": "full"},
            "partners": list(partners),
        },
        "configs": [asdict(CONFIGS_BY_KEY[k]) for k in configs],
        "workloads": [asdict(w) for w in workloads(quick=False) if w.key == "fast"],
        "described": {k: {"settings": session} for k in configs},
        "isolation": {},
        "runs": runs,
    }


def test_a_run_of_apaches_configurations_merges_beside_the_full_runs_figures():
    # An earlier full run (written before runs carried a session: its date stands for it).
    earlier = _results(
        None,
        "2026-12-01 10:00 UTC",
        "aaa1111",
        ["gunicorn-sync", "nginx-sync", "apache-sync"],
        [
            {**_run(None, 1, "gunicorn-sync", "fast", 2000), "session": None},
            {**_run(None, 1, "nginx-sync", "fast", 1800), "session": None},
            {**_run(None, 1, "apache-sync", "fast", 100), "session": None},
        ],
    )
    for run in earlier["runs"]:
        del run["session"]
    del earlier["meta"]["session"]
    now = _results(
        "2026-12-03T05:00:00Z",
        "2026-12-03 05:00 UTC",
        "bbb2222",
        ["nginx-sync", "apache-sync"],
        [
            _run("2026-12-03T05:00:00Z", 1, "nginx-sync", "fast", 1000),
            _run("2026-12-03T05:00:00Z", 1, "apache-sync", "fast", 900),
        ],
        partners=["nginx-sync"],
    )
    merged = report.merge(earlier, now)
    by = {(r["config"], r.get("partner", False)): r for r in merged["runs"]}
    # Apache's earlier runs are replaced; nginx keeps its own and gains this session's, for the ratios only.
    assert [r["rps"] for r in merged["runs"] if r["config"] == "apache-sync"] == [900]
    assert by[("nginx-sync", False)]["rps"] == 1800 and by[("nginx-sync", True)]["rps"] == 1000
    assert by[("gunicorn-sync", False)]["session"] == "2026-12-01 10:00 UTC"
    assert [c["key"] for c in merged["configs"]] == ["gunicorn-sync", "nginx-sync", "apache-sync"]
    assert merged["described"]["apache-sync"]["settings"] == "2026-12-03T05:00:00Z"
    assert merged["meta"]["commit"] == "aaa1111"
    # Each ratio within one session: Apache / nginx from this one, nginx / gunicorn from the earlier one.
    ratios = report.ratios(merged["runs"], ())
    (apache,) = [r for r in ratios if r["group"] == report.APACHE_GROUP]
    (proxy,) = [r for r in ratios if r["group"] == PROXY_COST and r["name"] == "sync, fast"]
    assert apache["median"] == pytest.approx(0.9) and proxy["median"] == pytest.approx(0.9)
    # nginx's own table row stays its full run's.
    fast = tuple(w for w in workloads(quick=False) if w.key == "fast")
    summary = report.summarize(merged["runs"], (CONFIGS_BY_KEY["nginx-sync"], CONFIGS_BY_KEY["apache-sync"]), fast)
    assert [(s["config"], s["rps"]) for s in summary] == [("nginx-sync", 1800), ("apache-sync", 900)]
    # results.md names each configuration's session, with its date and commit.
    assert set(merged["sessions"]) == {"2026-12-01 10:00 UTC", "2026-12-03T05:00:00Z"}
    assert merged["sessions"]["2026-12-01 10:00 UTC"]["configs"] == ["gunicorn-sync", "nginx-sync"]
    assert merged["sessions"]["2026-12-03T05:00:00Z"]["configs"] == ["apache-sync"]
    merged.update(summary=summary, ratios=ratios, targets=report.targets(ratios))
    merged["meta"].update(machine={k: "?" for k in ("cpus", "cpu_model", "os", "kernel", "docker_engine", "compose")})
    merged["meta"]["machine"]["memory_gib"] = 1
    merged["meta"]["profile"].update(repetitions=3, duration=4.0, warmup=1.0, quick=False)
    text = report.markdown(merged)
    assert "| `2026-12-03T05:00:00Z` | 2026-12-03 05:00 UTC | `bbb2222` | 10.0 min | Apache → gunicorn sync" in text
    assert "(and, for these ratios only, nginx → gunicorn sync)" in text
    assert "| `2026-12-01 10:00 UTC` | 2026-12-01 10:00 UTC | `aaa1111` |" in text


def test_only_a_subset_run_of_the_same_profile_merges(tmp_path, capsys):
    from bench.__main__ import earlier_results

    selection = select(parse_args(["--configs", "apache", "--out", str(tmp_path)]))
    assert earlier_results(parse_args(["--configs", "apache"]), selection) is None  # nothing there yet
    (tmp_path / "results.json").write_text(json.dumps({"meta": {"profile": {"name": "quick"}}}))
    assert earlier_results(parse_args(["--configs", "apache"]), selection) is None
    assert "not merging" in capsys.readouterr().err
    (tmp_path / "results.json").write_text(json.dumps({"meta": {"profile": asdict(selection.profile)}}))
    assert earlier_results(parse_args(["--configs", "apache"]), selection) is not None
    assert earlier_results(parse_args(["--configs", "apache", "--replace"]), selection) is None
    assert earlier_results(parse_args([]), selection) is None  # a full run replaces everything


def test_apaches_settings_are_held_to_the_projects_nginx_and_gunicorn_budget():
    from bench.lab import apache_settings
    from serving.settings import load

    conf = (REPO / "bench/apache/httpd.conf").read_text()
    nginx = (REPO / "nginx/nginx.conf").read_text()
    compose = (REPO / "docker-compose.yml").read_text()

    def directive(name: str) -> str:
        (value,) = re.findall(rf"^{name}\s+(.+)$", conf, flags=re.MULTILINE)
        return value.strip()

    def nginx_seconds(name: str) -> int:
        (value,) = re.findall(rf"^\s*{name}\s+(\d+)s;", nginx, flags=re.MULTILINE)
        return int(value)

    proxy = dict(p.split("=", 1) for p in directive("ProxyPass").split()[2:])
    threads, processes = int(directive("ThreadsPerChild")), int(directive("ServerLimit"))
    # A pooled backend connection per thread; every io client's request in flight at once.
    assert int(proxy["max"]) == threads
    assert int(directive("MaxRequestWorkers")) == threads * processes == int(directive("StartServers")) * threads
    assert threads * processes >= max(w.concurrency for w in workloads(quick=False) if w.key == "io")
    # Apache closes an idle backend connection before gunicorn would.
    assert int(proxy["ttl"]) < load({}).keepalive
    # The timeouts and limits are nginx's.
    (read_timeout,) = re.findall(r"proxy-read-timeout: &proxy-read-timeout (\d+)s", compose)
    assert proxy["timeout"] == read_timeout
    assert int(directive("KeepAliveTimeout")) == nginx_seconds("keepalive_timeout")
    assert directive("RequestReadTimeout") == (
        f"header={nginx_seconds('client_header_timeout')} body={nginx_seconds('client_body_timeout')},MinRate=500"
    )
    assert int(directive("Timeout")) == nginx_seconds("send_timeout")
    (body_mib,) = re.findall(r"^\s*client_max_body_size (\d+)m;", nginx, flags=re.MULTILINE)
    assert int(directive("LimitRequestBody")) == int(body_mib) * 1024 * 1024
    assert f"%{{HTTP:Content-Length}} -gt {int(body_mib) * 1024 * 1024}" in conf
    # What the lab reports from it.
    settings = apache_settings(
        "Server version: Apache/2.4.69 (Debian)\nServer MPM:     event\n",
        "Loaded Modules:\n core_module (static)\n proxy_module (shared)\n",
        conf,
    )
    assert settings["version"] == "Apache/2.4.69 (Debian)" and settings["mpm"] == "event"
    assert settings["modules"] == ["proxy_module"] and settings["ThreadsPerChild"] == str(threads)


def test_a_second_apache_session_supersedes_the_first_ones_partner_runs():
    full = _results(
        "S0", "2026-12-01 10:00 UTC", "aaa1111", ["nginx-sync"], [_run("S0", 1, "nginx-sync", "fast", 1800)]
    )

    def apache_session(session, apache_rps, nginx_rps):
        return _results(
            session,
            session,
            "bbb2222",
            ["nginx-sync", "apache-sync"],
            [_run(session, 1, "nginx-sync", "fast", nginx_rps), _run(session, 1, "apache-sync", "fast", apache_rps)],
            partners=["nginx-sync"],
        )

    merged = report.merge(report.merge(full, apache_session("S1", 500, 1000)), apache_session("S2", 700, 1000))
    assert sorted((r["session"], r["config"], r.get("partner", False)) for r in merged["runs"]) == [
        ("S0", "nginx-sync", False),
        ("S2", "apache-sync", False),
        ("S2", "nginx-sync", True),
    ]
    assert set(merged["sessions"]) == {"S0", "S2"}
    (apache,) = [r for r in report.ratios(merged["runs"], ()) if r["group"] == report.APACHE_GROUP]
    assert apache["median"] == pytest.approx(0.7) and apache["n"] == 1
