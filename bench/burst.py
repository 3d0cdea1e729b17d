"""A burst on a gevent worker's database pool, design by design, side by side:

    python -m bench.burst [--rounds N] [--quick] [--designs a,b]

10 requests of `/db/sleep?ms=1000` at once on 1 replica x 2 gevent workers x
a pool of 5 connections each: the design degree is 10, in one round. Each
design is a gunicorn of its own on 127.0.0.1, all started at once against a
throwaway PostgreSQL 15 cluster (initdb in a temporary directory, a free
port), and measured in turn, round after round, so that the machine's other
work falls on all of them alike. No Docker, no nginx. Everything started is
stopped at the end, on failure and Ctrl-C too.

Per design and round:
- burst: 10 at once, each on a new connection: the most in progress at once
  (the server's own timestamps, tests/concurrency.py), the rounds, and the
  split between the workers;
- kept-alive: the same 10 over 10 connections opened beforehand (one
  request each), as nginx's upstream keep-alive pool sends them: where the
  connections were accepted, not the gate, decides;
- healthz: how long /healthz takes on a new connection while 20 queries
  hold and wait for every connection of both pools;
- overload: 40 of 3 s with a pool timeout of 2 s: the 30 beyond the pools
  are JSON 503s after the timeout (count, and the slowest one's wait, which
  a gate that accepts late adds to; and the slowest answer of all 40);
- fast path: `hey` on `/`, a new connection per request (the accept path a
  gate runs on), req/s, and its ratio to the worker before's in the same
  round (with --quick, skipped).

The figures are printed as a table (the median over the rounds, with the
worst round of the degree), and written as JSON with --json.

    python -m bench.burst --gate-cost

prints only what the gate's check costs each accept, in-process: the fast
path's req/s on a shared 2-core machine spread too widely to show it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.concurrency import Result, fire, max_overlap, rounds

REPO = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
WORKERS = 2
POOL = 5
DESIGN = WORKERS * POOL
POOL_TIMEOUT = 2
#: The overload: four times what the pools run at once.
OVERLOAD = 4 * DESIGN


@dataclass(frozen=True)
class Design:
    key: str
    what: str
    #: The gevent worker's class: the server's, or a lab variant (bench/burst_workers.py).
    worker_class: str = "serving.gevent_worker.BalancedGeventWorker"
    #: Extra gunicorn arguments (GUNICORN_CMD_ARGS).
    args: tuple[str, ...] = ()


LAB = "bench.burst_workers."
DESIGNS = (
    Design("before", "request slots only (the worker before)", LAB + "RequestSlotsOnly"),
    Design("reuse_port", "request slots, a SO_REUSEPORT listener each", LAB + "RequestSlotsOnly", ("--reuse-port",)),
    Design("gate_stop", "pool gate: stop until a checkin", LAB + "StopWhileSaturated"),
    Design("gate", "pool gate: defer 50 ms (chosen)"),
)
CHOSEN = "gate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f} s")


class Postgres:
    """A throwaway PostgreSQL 15 cluster: trust auth on 127.0.0.1, one database."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="burst-pg-"))
        self.port = free_port()
        self.started = False

    def _run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        # PostgreSQL refuses to run as root: as the `postgres` user then.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True, timeout=60, **kwargs)

    def start(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        self._run(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "app")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        self.started = True
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "app", "app")
        return f"postgresql+psycopg://app@127.0.0.1:{self.port}/app"

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(subprocess.SubprocessError):
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def app_environ(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COMPOSE_PROFILES", "GUNICORN_CMD_ARGS")}
    env.update(
        PYTHONPATH=str(REPO),
        SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=database_url,
        WORKER_CLASS="gevent",
        WEB_CONCURRENCY=str(WORKERS),
        DATABASE_POOL_SIZE=str(POOL),
        DATABASE_POOL_TIMEOUT=str(POOL_TIMEOUT),
        DEMO_MAX_WORK_MS="3000",
        METRICS_PORT="0",
        GUNICORN_ACCESS_LOG="false",
        GUNICORN_LOG_LEVEL="warning",
    )
    return env


class Gunicorn:
    """One design's gunicorn, with the server's configuration (bench/burst_conf.py),
    in a process group of its own."""

    def __init__(self, design: Design, env: dict[str, str], scratch: Path) -> None:
        self.design = design
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [*design.args, "--control-socket", str(scratch / f"{design.key}.ctl")]
        self.env = {
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_CMD_ARGS": " ".join(args),
            "BURST_WORKER_CLASS": design.worker_class,
        }
        self.log = open(scratch / f"{design.key}.log", "w")  # noqa: SIM115 - closed in stop()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:bench.burst_conf"],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self) -> None:
        try:
            wait_for(lambda: requests.get(self.url + "/healthz", timeout=2).status_code == 200, 60, self.design.key)
        except RuntimeError as exc:
            self.log.flush()
            tail = Path(self.log.name).read_text()[-3000:]
            raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None
        # Both workers up, and every pool warm (a pool is known to the gate
        # from its first checkout): as a replica that has served a while.
        for _ in range(3):
            fire(self.url + "/db/sleep?ms=200", DESIGN)
        workers = {r.body["worker"] for r in fire(self.url + "/db/sleep?ms=300", 2 * DESIGN)}
        if len(workers) != WORKERS:
            raise RuntimeError(f"{self.design.key}: {len(workers)} workers answered, not {WORKERS}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


def fire_kept_alive(url: str, count: int) -> list[Result]:
    """`count` requests at once, each on a connection opened (and used once)
    beforehand, while nothing was busy."""
    sessions = [requests.Session() for _ in range(count)]
    try:
        for session in sessions:  # one at a time, as a quiet proxy's pool fills
            session.get(url.split("/db/")[0] + "/healthz", timeout=10)
        barrier = threading.Barrier(count)

        def one(session: requests.Session) -> Result:
            barrier.wait(timeout=30)
            started = time.monotonic()
            response = session.get(url, timeout=60)
            return Result(response.status_code, response.json(), time.monotonic() - started)

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(one, sessions))
    finally:
        for session in sessions:
            session.close()


def burst_figures(results: list[Result]) -> dict:
    ok = [r for r in results if r.status == 200]
    split: dict[str, int] = {}
    for r in ok:
        split[r.body["worker"]] = split.get(r.body["worker"], 0) + 1
    return {
        "ok": len(ok),
        "degree": max_overlap([r.interval for r in ok]),
        "rounds": rounds(ok),
        "split": sorted(split.values(), reverse=True),
    }


def healthz_while_saturated(url: str) -> float:
    """Seconds /healthz takes on a new connection while both pools are held and waited for."""
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(fire, url + "/db/sleep?ms=1000", 2 * DESIGN)
        time.sleep(0.4)
        started = time.monotonic()
        response = requests.get(url + "/healthz", timeout=10)
        waited = time.monotonic() - started
        busy.result()
    assert response.status_code == 200, response.status_code
    return waited


def overload(url: str) -> dict:
    results = fire(url + "/db/sleep?ms=3000", OVERLOAD)
    refused = [r for r in results if r.status != 200]
    json_503 = [r for r in refused if r.status == 503 and r.body.get("error", {}).get("status") == 503]
    return {
        "ok": len(results) - len(refused),
        "json_503": len(json_503),
        "other": len(refused) - len(json_503),
        "slowest_503_s": max((r.client_seconds for r in json_503), default=0.0),
        "slowest_s": max(r.client_seconds for r in results),
    }


def fast_path(url: str, seconds: float) -> float:
    """`hey` on `/`, a new connection per request, req/s."""
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", "16", "-disable-keepalive", url + "/"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Error distribution:", out)
    if not match or errors:
        raise RuntimeError(f"hey failed:\n{out}")
    return float(match.group(1))


@dataclass
class Figures:
    burst: list[dict] = field(default_factory=list)
    kept_alive: list[dict] = field(default_factory=list)
    healthz_s: list[float] = field(default_factory=list)
    overload: list[dict] = field(default_factory=list)
    fast_rps: list[float] = field(default_factory=list)


def measure(designs: list[Design], rounds_: int, fast_seconds: float | None) -> dict[str, Figures]:
    scratch = Path(tempfile.mkdtemp(prefix="burst-lab-"))
    postgres = Postgres()
    servers: list[Gunicorn] = []
    try:
        database_url = postgres.start()
        env = app_environ(database_url)
        subprocess.run(
            [sys.executable, "-m", "serving.migrate"], cwd=REPO, env=env, check=True, capture_output=True, timeout=120
        )
        servers = [Gunicorn(design, env, scratch) for design in designs]
        for server in servers:
            server.start()
        for server in servers:
            server.ready()
        figures = {d.key: Figures() for d in designs}
        for round_ in range(rounds_):
            # Alternating, and in a different order each round.
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for server in order:
                f = figures[server.design.key]
                f.burst.append(burst_figures(fire(server.url + "/db/sleep?ms=1000", DESIGN)))
                f.kept_alive.append(burst_figures(fire_kept_alive(server.url + "/db/sleep?ms=1000", DESIGN)))
                f.healthz_s.append(healthz_while_saturated(server.url))
                f.overload.append(overload(server.url))
                if fast_seconds:
                    f.fast_rps.append(fast_path(server.url, fast_seconds))
                print(f"round {round_ + 1} {server.design.key}: {f.burst[-1]}", file=sys.stderr, flush=True)
        return figures
    finally:
        for server in servers:
            server.stop()
        postgres.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def summary(designs: list[Design], figures: dict[str, Figures]) -> list[dict]:
    rows = []
    before = figures.get(DESIGNS[0].key)
    for design in designs:
        f = figures[design.key]
        row = {
            "design": design.key,
            "what": design.what,
            "degree_median": statistics.median(b["degree"] for b in f.burst),
            "degree_worst": min(b["degree"] for b in f.burst),
            "rounds_worst": max(b["rounds"] for b in f.burst),
            "one_round": sum(b["degree"] == DESIGN and b["rounds"] == 1 for b in f.burst),
            "bursts": len(f.burst),
            "kept_alive_degree_median": statistics.median(b["degree"] for b in f.kept_alive),
            "kept_alive_degree_worst": min(b["degree"] for b in f.kept_alive),
            "healthz_ms_worst": 1000 * max(f.healthz_s),
            "overload_503_worst": min(o["json_503"] for o in f.overload),
            "overload_other": sum(o["other"] for o in f.overload),
            "overload_slowest_503_s": max(o["slowest_503_s"] for o in f.overload),
            "overload_slowest_s": max(o["slowest_s"] for o in f.overload),
        }
        if f.fast_rps:
            row["fast_rps_median"] = statistics.median(f.fast_rps)
            row["fast_rps_min"], row["fast_rps_max"] = min(f.fast_rps), max(f.fast_rps)
        if f.fast_rps and before is not None and before.fast_rps:
            # Over the worker before's in the same round: the machine's other
            # work moves both alike, so this spreads less than req/s do.
            ratios = [mine / theirs for mine, theirs in zip(f.fast_rps, before.fast_rps, strict=True)]
            row["fast_ratio_median"] = statistics.median(ratios)
            row["fast_ratio_min"], row["fast_ratio_max"] = min(ratios), max(ratios)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    fast = any("fast_rps_median" in r for r in rows)
    head = (
        "| design | burst degree (median, worst) | bursts in one round | kept-alive degree (median, worst) "
        f"| /healthz while saturated, worst | overload: JSON 503 of {OVERLOAD} (fewest), slowest 503, slowest answer |"
    )
    rule = "|---|---|---|---|---|---|"
    if fast:
        head += " fast path `/`, req/s (median, min-max) | fast path over the worker before's, same round |"
        rule += "---|---|"
    lines = [head, rule]
    for r in rows:
        other = f" (+{r['overload_other']} other)" if r["overload_other"] else ""
        line = (
            f"| {r['design']}: {r['what']} | {r['degree_median']:g}, {r['degree_worst']} "
            f"| {r['one_round']}/{r['bursts']} | {r['kept_alive_degree_median']:g}, {r['kept_alive_degree_worst']} "
            f"| {r['healthz_ms_worst']:.0f} ms | {r['overload_503_worst']}"
            f"{other}, {r['overload_slowest_503_s']:.2f} s, {r['overload_slowest_s']:.1f} s |"
        )
        if fast:
            line += f" {r['fast_rps_median']:.0f} ({r['fast_rps_min']:.0f}-{r['fast_rps_max']:.0f}) |"
            line += (
                f" {r['fast_ratio_median']:.2f} ({r['fast_ratio_min']:.2f}-{r['fast_ratio_max']:.2f}) |"
                if "fast_ratio_median" in r
                else " |"
            )
        lines.append(line)
    return "\n".join(lines)


def gate_cost(accepts: int = 200_000) -> float:
    """Microseconds the gate's check adds to each accept when a pool has a
    connection free (the fast path's case), in this process: a SQLAlchemy
    QueuePool of POOL on SQLite, no server. The fast path's req/s on this
    shared machine spread too widely to show a cost this small."""
    import timeit

    from sqlalchemy import create_engine
    from sqlalchemy.pool import QueuePool

    from serving.gevent_worker import DatabaseGate, RequestSlotPool

    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/db", poolclass=QueuePool, pool_size=POOL, max_overflow=0)
        slots = RequestSlotPool(1000)
        gate = DatabaseGate(0.05, fresh=RequestSlotPool.all_fresh)
        gate.pools.add(engine.pool)
        server = type("Server", (), {"started": True})()
        try:
            seconds = timeit.timeit(lambda: gate.admits(server), number=accepts)
        finally:
            RequestSlotPool.instances.remove(slots)
            engine.dispose()
    return seconds / accepts * 1e6


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 rounds, no fast path")
    parser.add_argument("--fast-seconds", type=float, default=4.0)
    parser.add_argument("--designs", default=",".join(d.key for d in DESIGNS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--gate-cost", action="store_true", help="only the gate's check per accept, in-process")
    args = parser.parse_args(argv)
    if args.gate_cost:
        print(f"the gate's check: {gate_cost():.1f} µs per accept (a pool of {POOL} with a connection free)")
        return 0
    designs = [d for d in DESIGNS if d.key in args.designs.split(",")]
    rounds_ = 3 if args.quick else args.rounds
    fast_seconds = None if args.quick else args.fast_seconds
    interrupted = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _stop)  # a SIGTERM stops what was started, as Ctrl-C does
    try:
        figures = measure(designs, rounds_, fast_seconds)
    finally:
        signal.signal(signal.SIGTERM, interrupted)
    rows = summary(designs, figures)
    print(f"{WORKERS} gevent workers x a pool of {POOL}, bursts of {DESIGN} x 1 s, {rounds_} rounds alternating:")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "figures": {k: vars(v) for k, v in figures.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
