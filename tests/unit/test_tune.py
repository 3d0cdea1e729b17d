"""make tune's pure parts, without Docker: the candidates (none over the CPU
quota or the connection budget), the objective's arithmetic and the tie
rule on recorded figures, the settings' one-line errors, the locust command
and the generated Compose overlay. The tune as a whole: tests/tune/ (-m tune)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from bench.lab import LabError
from bench.tune import candidates as cands
from bench.tune import compose, plot, run, settings, tuner
from bench.tune.candidates import Candidate, Limits
from bench.tune.verdict import TIE_FLOOR, TIE_FLOOR_ONE_RUN, Objective, decide, figures
from harness.stack import REPO
from serving.budget import OVERLAP, Budget

pytestmark = pytest.mark.unit


def budget(max_connections=100, replicas=2, reserved=5, superuser=3) -> Budget:
    return Budget(
        replicas=replicas,
        workers=1,
        per_worker=1,
        reserved=reserved,
        max_connections=max_connections,
        superuser_reserved=superuser,
        role_reserved=0,
    )


LIMITS = [
    Limits(cpus, b)
    for cpus in (0.5, 1, 1.5, 2, 4, 8)
    for b in (None, budget(), budget(max_connections=40, replicas=1), budget(max_connections=500, replicas=4))
]


@pytest.mark.parametrize("limits", LIMITS, ids=lambda limits: f"{limits.cpus}cpus-{limits.budget}")
@pytest.mark.parametrize("quick", [True, False])
def test_no_candidate_is_over_the_cpu_quota_or_the_connection_budget(limits, quick):
    coarse = cands.coarse(limits, quick=quick)
    assert coarse, "no candidate at all"
    # Every neighbour the fine pass could try, around every coarse candidate.
    every = coarse + [f for best in coarse for f in cands.fine(best, limits, set())]
    cores = max(1, -(-limits.cpus // 1))
    for c in every:
        assert 1 <= c.workers <= 2 * cores + 1, f"{c.key}: {c.workers} workers on {limits.cpus} CPUs"
        if limits.budget is None:
            assert c.pool == 0, f"{c.key} has a pool without a database"
        else:
            b = limits.budget
            needed = b.replicas * c.workers * c.pool * OVERLAP + b.reserved
            assert c.pool >= 1 and needed <= b.allowed, f"{c.key} needs {needed} of {b.allowed} connections"


def test_the_budget_removes_the_candidates_over_it_and_only_those():
    generous = {c.key for c in cands.coarse(Limits(2, budget(max_connections=1000)))}
    tight = {c.key for c in cands.coarse(Limits(2, budget()))}
    # 2 replicas x 2 workers x 16 connections x 2 + 5 = 133 > 97; 2 x 2 x 10 x 2 + 5 = 85 fits.
    assert "gthread-w2-t16-p16" in generous and "gthread-w2-t16-p16" not in tight
    assert "gevent-w2-c1000-p10" in tight
    assert tight < generous


def test_the_coarse_pass_has_every_class_at_the_core_count_and_at_twice_plus_one():
    keys = {c.key for c in cands.coarse(Limits(2))}
    assert {"sync-w2", "sync-w5", "gthread-w2-t4", "gthread-w2-t16", "gevent-w2-c1000", "gevent-w5-c1000"} <= keys
    # A fractional quota rounds up, as serving/settings.py's default workers do.
    assert {c.workers for c in cands.coarse(Limits(1.5))} == {2, 5}


def test_the_fine_pass_tries_the_bests_untried_neighbours():
    best = Candidate("gthread", 2, threads=16)
    fine = {c.key for c in cands.fine(best, Limits(2), tried={Candidate("gthread", 2, threads=32)})}
    assert fine == {"gthread-w1-t16", "gthread-w3-t16", "gthread-w2-t8"}
    centre = Candidate("gevent", 2, greenlets=1000, pool=10)
    gevent = {c.key for c in cands.fine(centre, Limits(2, budget(1000)), set())}
    assert {"gevent-w2-c500-p10", "gevent-w2-c2000-p10", "gevent-w2-c1000-p5", "gevent-w2-c1000-p20"} <= gevent


def test_a_candidates_environment_is_what_the_settings_accept():
    from serving.settings import load

    for c in cands.coarse(Limits(2, budget(1000))) + cands.coarse(Limits(2)):
        loaded = load(c.environment(), cpus=2)
        assert (loaded.worker_class, loaded.workers) == (c.worker_class, c.workers)
        assert loaded.threads == c.threads
        if c.pool:
            assert loaded.database_pool_size == c.pool


# --- the objective and the tie rule, on recorded figures ----------------------


def recorded(key: str, rep: int, rps: float, p95: float = 50.0, requests: int = 1000, failures: int = 0) -> dict:
    return {
        "config": key,
        "workload": "tune",
        "rep": rep,
        "rps": rps,
        "requests": requests,
        "errors_total": failures,
        "latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95 * 2},
        "app_cpu": 1.0,
        "app_memory_mib": 100.0,
        "other_cpu": 0.05,
    }


SYNC, GTHREAD, GEVENT = Candidate("sync", 2), Candidate("gthread", 2, threads=4), Candidate("gevent", 2, greenlets=1000)
OBJECTIVE = Objective(p95_ms=200, max_error_ratio=0.01)


def test_the_objectives_figures_are_medians_and_the_error_ratio_counts_every_request():
    runs = [
        recorded(SYNC.key, 1, 100, p95=40, requests=1000, failures=5),
        recorded(SYNC.key, 2, 110, p95=60, requests=3000, failures=15),
        recorded(SYNC.key, 3, 90, p95=90, requests=2000, failures=0),
    ]
    row = figures(runs, SYNC)
    assert (row["rps"], row["rps_min"], row["rps_max"]) == (100, 90, 110)
    assert row["p95_ms"] == 60 and (row["p95_ms_min"], row["p95_ms_max"]) == (40, 90)
    assert row["error_ratio"] == pytest.approx(20 / 6000)
    assert row["spread"] == pytest.approx(0.2)
    assert OBJECTIVE.problems(row) == []
    assert OBJECTIVE.problems({**row, "p95_ms": 201.0}) == ["p95 201 ms > 200 ms"]
    assert OBJECTIVE.problems({**row, "error_ratio": 0.02}) == ["error ratio 2.00% > 1.00%"]


def test_the_highest_throughput_within_the_targets_wins():
    runs = [
        # Fastest, but its p95 misses the target.
        recorded(GEVENT.key, 1, 500, p95=400),
        # Second, with too many errors.
        recorded(GTHREAD.key, 1, 300, p95=100, failures=50),
        recorded(SYNC.key, 1, 200, p95=150),
    ]
    verdict = decide(runs, [SYNC, GTHREAD, GEVENT], OBJECTIVE)
    assert verdict.winner["key"] == SYNC.key
    assert [row["key"] for row in verdict.table] == [GEVENT.key, GTHREAD.key, SYNC.key]
    assert verdict.runner_up is None
    assert any("failed requests" in n for n in verdict.notes)


def test_a_difference_inside_the_run_to_run_spread_is_a_tie_and_the_simpler_wins():
    runs = []
    for rep, (gevent, sync) in enumerate([(100, 90), (104, 105), (98, 99)], start=1):
        runs += [recorded(GEVENT.key, rep, gevent), recorded(SYNC.key, rep, sync)]
    verdict = decide(runs, [GEVENT, SYNC], OBJECTIVE)
    assert verdict.table[0]["key"] == GEVENT.key  # the fastest by its median
    assert verdict.winner["key"] == SYNC.key  # but a tie, and sync is simpler
    assert verdict.behind["tie"] is True


def test_a_difference_beyond_the_spread_is_not_a_tie():
    runs = []
    for rep, (gevent, sync) in enumerate([(100, 80), (101, 81), (99, 80)], start=1):
        runs += [recorded(GEVENT.key, rep, gevent), recorded(SYNC.key, rep, sync)]
    verdict = decide(runs, [GEVENT, SYNC], OBJECTIVE)
    assert verdict.winner["key"] == GEVENT.key
    assert verdict.behind["tie"] is False
    assert verdict.behind["median"] == pytest.approx(0.8, abs=0.01)


def test_without_a_measured_spread_the_floor_decides_the_tie():
    def passes(n: int, ratio: float) -> list[dict]:
        pairs = [(recorded(GEVENT.key, rep, 100), recorded(SYNC.key, rep, ratio * 100)) for rep in range(1, n + 1)]
        return [run for pair in pairs for run in pair]

    # One run each: no spread at all, so the higher floor.
    assert decide(passes(1, 1 - TIE_FLOOR_ONE_RUN * 0.9), [GEVENT, SYNC], OBJECTIVE).winner["key"] == SYNC.key
    assert decide(passes(1, 1 - TIE_FLOOR_ONE_RUN * 1.1), [GEVENT, SYNC], OBJECTIVE).winner["key"] == GEVENT.key
    # Two identical passes each: a spread of zero, so the lower floor.
    assert decide(passes(2, 1 - TIE_FLOOR * 0.9), [GEVENT, SYNC], OBJECTIVE).winner["key"] == SYNC.key
    assert decide(passes(2, 1 - TIE_FLOOR * 1.1), [GEVENT, SYNC], OBJECTIVE).winner["key"] == GEVENT.key


def test_simpler_means_the_class_first_then_fewer_workers():
    order = sorted(
        [Candidate("gevent", 1, greenlets=1000), Candidate("sync", 5), Candidate("gthread", 2, threads=4)],
        key=Candidate.simplicity,
    )
    assert [c.worker_class for c in order] == ["sync", "gthread", "gevent"]
    assert Candidate("sync", 2).simplicity() < Candidate("sync", 3).simplicity()


def test_no_recommendation_when_nothing_meets_the_targets_or_the_machine_was_busy():
    missed = decide([recorded(SYNC.key, 1, 100, p95=900)], [SYNC], OBJECTIVE)
    assert missed.winner is None and "no candidate met the targets" in missed.refusals[0]
    busy_run = {**recorded(SYNC.key, 1, 100), "other_cpu": 1.5}
    busy = decide([busy_run, recorded(GEVENT.key, 1, 90)], [SYNC, GEVENT], OBJECTIVE, host_cores=2)
    assert busy.winner is None and "too busy to measure" in busy.refusals[0]
    assert decide([recorded(SYNC.key, 1, 100)], [SYNC], OBJECTIVE, host_cores=2).winner is not None


# --- settings, the load command, the overlay ------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TUNE_P95_MS", "fast"),
        ("TUNE_MAX_ERROR_RATIO", "2"),
        ("TUNE_BUDGET", "ten minutes"),
        ("TUNE_USERS", "0"),
        ("TUNE_SPAWN_RATE", "-1"),
        ("TUNE_APP_CPUS", "0"),
        ("TUNE_RUN_SECONDS", "1"),
        ("TUNE_DATABASE", "maybe"),
        ("TUNE_LOCUSTFILE", "no/such/locustfile.py"),
        ("APP_REPLICAS", "0"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(name, value):
    with pytest.raises(settings.TuneError) as raised:
        settings.load({name: value}, {})
    message = str(raised.value)
    assert message.startswith(f"{name}=") and "\n" not in message


def test_the_defaults_are_the_load_tests_and_the_apps():
    loaded = settings.load({"APP_CPUS": "1.5"}, {"COMPOSE_PROFILES": "db"})
    assert (loaded.users, loaded.spawn_rate) == (30, 10)  # loadtest/locust.conf
    assert (loaded.p95_ms, loaded.max_error_ratio, loaded.budget_s) == (500, 0.01, 600)
    assert loaded.app_cpus == 1.5 and loaded.database is True and loaded.replicas == 2
    assert loaded.locustfile == REPO / "loadtest" / "locustfile.py" and loaded.shape is False
    assert settings.load({"TUNE_BUDGET": "90s"}, {}).budget_s == 90
    assert settings.load({}, {}).app_cpus == os.cpu_count()


def test_a_load_test_shape_sets_the_load_instead_of_users(tmp_path):
    locustfile = tmp_path / "shaped.py"
    locustfile.write_text(
        "import locust\n\nclass Steps(locust.LoadTestShape):\n    def tick(self):\n        return None\n"
    )
    loaded = settings.load({"TUNE_LOCUSTFILE": str(locustfile)}, {})
    assert loaded.shape is True
    command = run.locust_command(loaded, 10, loaded.spawn_seconds)
    assert "--users" not in command and "--run-time" in command
    # Bounded by timeout(1) all the same: locust ignores --run-time with a shape.
    assert command[: command.index("locust")] == ["timeout", "--signal=INT", "--kill-after=30", "13s"]
    plain = run.locust_command(settings.load({"TUNE_USERS": "7"}, {}), 10, 1)
    assert plain[plain.index("--users") + 1] == "7" and plain[plain.index("--host") + 1] == "http://nginx:8080"


def test_locusts_json_is_found_after_the_locustfiles_own_output():
    stats = [{"name": "/", "num_requests": 3}]
    assert run.parse_stats("Load test passed [exit code 0]\n" + json.dumps(stats, indent=4) + "\n") == stats


def test_the_overlay_gives_each_candidate_its_own_network_quota_and_names(tmp_path):
    chosen = cands.coarse(Limits(1.5, budget(1000)), quick=True)
    data = compose.overlay(
        chosen,
        cpus=1.5,
        memory="1g",
        profile_dir=tmp_path,
        app_env={"DEMO_MAX_WORK_MS": "5000"},
        database=True,
    )
    overlay = compose.write(tmp_path / "overlay.yml", data)
    rendered = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.yml", "-f", str(overlay), "-p", "tune-config-check"]
        + ["--profile", "tune", "config", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    services = json.loads(rendered.stdout)["services"]
    for c in chosen:
        names = compose.service_names(c)
        network = f"tune-{c.key}"
        app, nginx, generator = (services[names[k]] for k in ("app", "front", "generator"))
        assert app["cpus"] == 1.5
        assert app["networks"][network]["aliases"] == ["app"] and compose.DATABASE_NETWORK in app["networks"]
        assert nginx["networks"] == {network: {"aliases": ["nginx"]}}
        assert list(generator["networks"]) == [network]
        for service in (app, nginx, generator):
            assert service["read_only"] and service["cap_drop"] == ["ALL"]
        assert {k: app["environment"][k] for k in c.environment()} == c.environment()
        assert app["environment"]["DEMO_MAX_WORK_MS"] == "5000"
        assert [s["source"] for s in app["secrets"]] == ["db_password"]
    # The throwaway database: its data on a tmpfs, not the product's volume.
    assert services["db"].get("volumes", []) == []
    assert compose.DATABASE_NETWORK in services["db"]["networks"]


def test_locusts_figures_carry_the_p95_the_objective_reads():
    from bench import generators

    times = {"10": 90, "50": 6, "200": 4}
    stats = [
        {
            "name": "/",
            "num_requests": 100,
            "num_failures": 0,
            "response_times": times,
            "start_time": 0.0,
            "last_request_timestamp": 10.0,
            "total_response_time": sum(float(ms) * n for ms, n in times.items()),
            "max_response_time": 200,
        }
    ]
    # The 95th of 100 answers is among the six at 50 ms; the 97th, at 200.
    latency = generators.summarize_locust(stats, users=10, seconds=10)["latency_ms"]
    assert latency["p95"] == 50 and latency["p99"] == 200


def test_the_tunes_nginx_settings_are_the_labs_but_the_name_it_answers_to():
    # bench/tune/compose.py writes them out beside bench/compose.yml's
    # x-nginx-env: the two must not drift apart. Compose's own tags
    # (!override, !reset) mean nothing here.
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    lab = yaml.load((REPO / "bench" / "compose.yml").read_text(), Loader=Loader)["x-nginx-env"]  # noqa: S506
    assert {**lab, "SERVER_NAMES": "nginx"} == compose.NGINX_ENV


#: A stand-in for locust in the bound's own prefix: runs until SIGINT (or
#: forever, when it ignores it), then prints a summary as locust does on Ctrl-C.
NEVER_ENDING = """
import json, signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    print(json.dumps([{"name": "/", "num_requests": 7}]))
    sys.exit(0)
"""


def bounded(monkeypatch, program: list[str], stop_s: int = 30) -> subprocess.CompletedProcess:
    """The program under the exact prefix locust_command puts before locust,
    for a 1 s run."""
    monkeypatch.setattr(run, "STARTUP_S", 0)
    monkeypatch.setattr(run, "STOP_S", stop_s)
    command = run.locust_command(settings.load({}, {}), 1, 0)
    prefix = command[: command.index("locust")]
    return subprocess.run(prefix + program, capture_output=True, text=True, timeout=60, check=False)


def test_a_run_that_never_ends_is_stopped_by_sigint_at_its_end_and_its_summary_kept(monkeypatch):
    result = bounded(monkeypatch, [sys.executable, "-c", NEVER_ENDING, "forever"])
    assert run.stopped_by_us(result.returncode, result.stderr) is True
    assert run.parse_stats(result.stdout) == [{"name": "/", "num_requests": 7}]


def test_a_run_that_ends_itself_is_not_stopped_and_one_deaf_to_sigint_is_killed_naming_it(monkeypatch):
    ended = bounded(monkeypatch, [sys.executable, "-c", "print('[]')"])
    assert run.stopped_by_us(ended.returncode, ended.stderr) is False
    deaf = bounded(monkeypatch, [sys.executable, "-c", NEVER_ENDING, "ignore"], stop_s=1)
    with pytest.raises(LabError, match="did not stop within 1 s of the SIGINT"):
        run.stopped_by_us(deaf.returncode, deaf.stderr)
    with pytest.raises(LabError, match="^locust exited 2: ImportError: no$"):
        run.stopped_by_us(2, "Traceback ...\nImportError: no")


def test_only_a_shape_that_ended_itself_before_the_runs_end_ended_early():
    assert run.ended_early(shape=True, stopped=False, ran_s=2.0, planned_s=5) is True
    # Stopped by the tune, or ending on time, or no shape (locust's --run-time).
    assert run.ended_early(shape=True, stopped=True, ran_s=2.0, planned_s=5) is False
    assert run.ended_early(shape=True, stopped=False, ran_s=4.5, planned_s=5) is False
    assert run.ended_early(shape=False, stopped=False, ran_s=2.0, planned_s=5) is False


def test_the_report_says_which_runs_a_shape_ended_early_and_for_how_long(tmp_path):
    locustfile = tmp_path / "shaped.py"
    locustfile.write_text(
        "import locust\n\nclass Short(locust.LoadTestShape):\n    def tick(self):\n        return None\n"
    )
    loaded = settings.load({"TUNE_LOCUSTFILE": str(locustfile)}, {}, quick=True)
    runs = [{"ended_early_s": 2.1}, {}, {"ended_early_s": 2.4}]
    (note,) = tuner.early_notes(runs, loaded)
    assert "in 2 of 3 runs, after 2.1–2.4 s of the 5 s planned" in note
    (one,) = tuner.early_notes([{"ended_early_s": 2.0}], loaded)
    assert "in 1 of 1 runs, after 2 s of the 5 s planned" in one
    assert tuner.early_notes([{}, {}], loaded) == []


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "problem"),
    [
        (
            1,
            "",
            "Traceback (most recent call last):\n  File ...\nModuleNotFoundError: No module named 'nowhere'\n",
            "does not load: ModuleNotFoundError: No module named 'nowhere'",
        ),
        (0, "Available Users:\n", "", "defines no User class: locust has no user to run"),
        (0, "Available Users:\n    Waiting\n", "", None),
    ],
)
def test_a_locustfile_that_cannot_run_is_one_line_naming_why(returncode, stdout, stderr, problem):
    assert run.locustfile_problem(returncode, stdout, stderr) == problem


def test_labels_go_beside_their_points_and_over_nothing_else():
    # Six markers within a few pixels of each other (the winner's
    # neighbours), one alone, a legend-sized obstacle beside the crowd.
    crowd = [(400.0 + 3 * i, 300.0 + 2 * i) for i in range(6)]
    points = [*crowd, (100.0, 100.0)]
    markers = [(x - 5, y - 5, x + 5, y + 5) for x, y in points]
    sizes = [(90.0, 10.0)] * len(points)
    legend = (420.0, 260.0, 520.0, 330.0)
    area = (50.0, 50.0, 750.0, 450.0)
    boxes = plot.place_labels(markers, sizes, [legend], area)
    for i, box in enumerate(boxes):
        assert plot.inside(box, area), box
        assert (box[2] - box[0], box[3] - box[1]) == sizes[i]
        assert not any(plot.overlaps(box, other) for other in [*markers, legend]), box
        assert not any(plot.overlaps(box, other) for other in boxes[:i] + boxes[i + 1 :]), box
    # Near their points: the lone one right beside its marker, the crowd's
    # within a few label heights.
    assert boxes[-1] == (105.0 + plot.GAP, 95.0, 195.0 + plot.GAP, 105.0)
    assert all(plot._distance(point, box) < 6 * 10.0 for point, box in zip(points, boxes, strict=True))


def test_a_label_with_no_room_is_refused_not_drawn_over_another():
    with pytest.raises(ValueError, match="no room for a label"):
        plot.place_labels([(8.0, 8.0, 12.0, 12.0)] * 2, [(80.0, 15.0)] * 2, [], (0.0, 0.0, 100.0, 20.0))
