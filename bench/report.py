"""From the runs to the published figures: medians and spread per
configuration and workload, the ratios measured in the same run, the
issue's targets, and the files in docs/benchmarks/ (Markdown, CSV, JSON)."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable
from pathlib import Path

from bench.matrix import CONFIGS_BY_KEY, DATABASE_WORKLOAD, DB_MS, STATIC_WORKLOAD, Config, Workload

#: Where docs/benchmarks/README.md takes the generated part.
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"

CLASSES = ("sync", "gthread", "gevent")
APACHE_GROUP = "Apache / nginx in front of the same gunicorn class (req/s)"
APACHE_CPU_GROUP = "Apache / nginx in front of the same gunicorn class (the front's CPU per request)"


def _median(values: Iterable[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict], configs: tuple[Config, ...], workloads: tuple[Workload, ...]) -> list[dict]:
    summary = []
    for workload in workloads:
        for config in configs:
            cell = [r for r in runs if r["config"] == config.key and r["workload"] == workload.key]
            # A partner's runs of a later session (merge) serve its ratios
            # only, when its own session's runs are there.
            cell = [r for r in cell if not r.get("partner")] or cell
            if not cell:
                continue
            rps = [r["rps"] for r in cell]
            median = statistics.median(rps)
            summary.append(
                {
                    "config": config.key,
                    "label": config.label,
                    "family": config.family,
                    "workload": workload.key,
                    "runs": len(cell),
                    "rps": median,
                    "rps_min": min(rps),
                    "rps_max": max(rps),
                    "spread": (max(rps) - min(rps)) / median if median else None,
                    "p50_ms": _median(r["latency_ms"]["p50"] for r in cell),
                    "p90_ms": _median(r["latency_ms"]["p90"] for r in cell),
                    "p99_ms": _median(r["latency_ms"]["p99"] for r in cell),
                    "max_ms": max(r["latency_ms"]["max"] for r in cell),
                    "requests": sum(r["requests"] for r in cell),
                    "errors": sum(r["errors_total"] for r in cell),
                    "served_share": _median(r.get("served_share") for r in cell),
                    "generator_cpu": _median(r.get("generator_cpu") for r in cell),
                    "app_cpu": _median(r.get("app_cpu") for r in cell),
                    "front_cpu": _median(r.get("front_cpu") for r in cell),
                    "other_cpu": _median(r.get("other_cpu") for r in cell),
                    "busiest_worker_share": _median(r.get("busiest_worker_share") for r in cell),
                    "app_cpu_ms_per_request": _median(r.get("app_cpu_ms_per_request") for r in cell),
                    "front_cpu_ms_per_request": _median(r.get("front_cpu_ms_per_request") for r in cell),
                    "generator_cpu_ms_per_request": _median(r.get("generator_cpu_ms_per_request") for r in cell),
                }
            )
    return summary


def paired_ratio(runs: list[dict], a: tuple[str, str], b: tuple[str, str], figure: str = "rps") -> dict | None:
    """`figure` (req/s by default) of a / of b, repetition by repetition
    (each pair measured in the same pass of the same lab session: a merged
    results file holds several sessions, whose pass numbers repeat), then
    the median and range."""
    by_rep = {}
    for run in runs:
        if run.get(figure) is not None:
            by_rep.setdefault((run.get("session"), run["rep"]), {})[(run["config"], run["workload"])] = run[figure]
    ratios = [rep[a] / rep[b] for rep in by_rep.values() if a in rep and b in rep and rep[b] > 0]
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "n": len(ratios)}


def _ideal(runs: list[dict], config: str, workload: Workload) -> dict | None:
    values = [r["rps"] / workload.ideal_rps for r in runs if r["config"] == config and r["workload"] == workload.key]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratios(runs: list[dict], workloads: tuple[Workload, ...]) -> list[dict]:
    """The comparisons the issue asks for, each measured within one run."""
    out = []
    by_key = {w.key: w for w in workloads}

    def add(group: str, name: str, value: dict | None, **extra) -> None:
        if value is not None:
            out.append({"group": group, "name": name, **value, **extra})

    for workload in ("fast", "io", "cpu", "mix"):
        for cls in CLASSES:
            add(
                "proxy cost: nginx → gunicorn vs gunicorn direct",
                f"{cls}, {workload}",
                paired_ratio(runs, (f"nginx-{cls}", workload), (f"gunicorn-{cls}", workload)),
                workload=workload,
            )
    for cls in CLASSES:
        for workload in ("fast", "io", "cpu", "mix"):
            add(
                APACHE_GROUP,
                f"{cls}, {workload}",
                paired_ratio(runs, (f"apache-{cls}", workload), (f"nginx-{cls}", workload)),
                workload=workload,
            )
    for cls in CLASSES:
        for workload in ("fast", "io", "cpu", "mix"):
            add(
                APACHE_CPU_GROUP,
                f"{cls}, {workload}",
                paired_ratio(
                    runs,
                    (f"apache-{cls}", workload),
                    (f"nginx-{cls}", workload),
                    figure="front_cpu_ms_per_request",
                ),
                workload=workload,
            )
    for dev in ("dev-single", "dev-threaded", "dev-processes"):
        for workload in ("fast", "io", "cpu", "mix"):
            for other in [f"nginx-{c}" for c in CLASSES] + ["nginx-uwsgi-threads", "nginx-uwsgi-gevent"]:
                add(
                    f"vs the dev server ({dev})",
                    f"{other} / {dev}, {workload}",
                    paired_ratio(runs, (other, workload), (dev, workload)),
                    workload=workload,
                )
    if "io" in by_key and by_key["io"].ideal_rps:
        for config in ("nginx-gevent", "gunicorn-gevent", "nginx-uwsgi-gevent", "nginx-gthread", "nginx-uwsgi-threads"):
            add(
                f"vs the ideal I/O throughput ({by_key['io'].ideal_rps:.0f} req/s = connections ÷ {by_key['io'].path})",
                config,
                _ideal(runs, config, by_key["io"]),
                workload="io",
            )
    if DATABASE_WORKLOAD in by_key:
        clients = by_key[DATABASE_WORKLOAD].concurrency
        for cls in CLASSES:
            config = CONFIGS_BY_KEY[f"nginx-{cls}"]
            # What the pools allow: as many waits at once as connections, at most one per client.
            ideal = min(clients, config.database_connections) / (DB_MS / 1000)
            measured = [r for r in runs if r["config"] == config.key and r["workload"] == DATABASE_WORKLOAD]
            values = [r["rps"] / ideal for r in measured]
            if values:
                add(
                    f"vs the ideal database throughput (min(clients, connections in all the pools) ÷ {DB_MS} ms)",
                    f"{config.key} ({config.database_connections} connections: ideal {ideal:.0f} req/s)",
                    {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)},
                    workload=DATABASE_WORKLOAD,
                )
    for config in [c for c in CONFIGS_BY_KEY.values() if c.serves_static]:
        add(
            "a static file from nginx vs /healthz through gunicorn, same nginx (req/s)",
            f"{config.key}",
            paired_ratio(runs, (config.key, STATIC_WORKLOAD), (config.key, "fast")),
            workload=STATIC_WORKLOAD,
        )
    for workload in ("fast", "io", "cpu", "mix"):
        for ours in [f"nginx-{c}" for c in CLASSES]:
            for peer in ("nginx-uwsgi-threads", "nginx-uwsgi-gevent"):
                add(
                    "vs nginx + uWSGI",
                    f"{ours} / {peer}, {workload}",
                    paired_ratio(runs, (ours, workload), (peer, workload)),
                    workload=workload,
                )
    for workload in ("fast", "io", "cpu", "mix"):
        for ours in [f"nginx-{c}" for c in CLASSES]:
            add(
                "vs nginx + Granian",
                f"{ours} / nginx-granian, {workload}",
                paired_ratio(runs, (ours, workload), ("nginx-granian", workload)),
                workload=workload,
            )
    for workload in ("fast", "io", "cpu"):
        add(
            "proxy cost: nginx → Granian vs Granian direct",
            f"{workload}",
            paired_ratio(runs, ("nginx-granian", workload), ("granian", workload)),
            workload=workload,
        )
    for workload in ("fast", "cpu", "mix"):
        add(
            "gunicorn reuse_port: nginx → gthread with it vs without",
            f"{workload}",
            paired_ratio(runs, ("nginx-gthread-reuseport", workload), ("nginx-gthread", workload)),
            workload=workload,
        )
    for workload in ("fast", "io", "mix"):
        add(
            "the project's gthread class vs gunicorn's own (req/s)",
            f"{workload}",
            paired_ratio(runs, ("nginx-gthread", workload), ("nginx-gthread-stock", workload)),
            workload=workload,
        )
    add(
        "the project's gthread class vs gunicorn's own, under sustained overload (share of clients answered)",
        "io",
        paired_ratio(runs, ("nginx-gthread", "io"), ("nginx-gthread-stock", "io"), figure="served_share"),
        workload="io",
    )
    for worker_class in ("gthread", "gevent"):
        for workload in ("fast", "io"):
            add(
                "unix socket vs TCP between nginx and gunicorn",
                f"{worker_class}, {workload}",
                paired_ratio(runs, (f"nginx-{worker_class}-unix", workload), (f"nginx-{worker_class}", workload)),
                workload=workload,
            )
        add(
            "proxy cost over a unix socket: nginx → gunicorn vs gunicorn direct",
            f"{worker_class}, fast",
            paired_ratio(runs, (f"nginx-{worker_class}-unix", "fast"), (f"gunicorn-{worker_class}", "fast")),
            workload="fast",
        )
    add(
        "HTTPS / plain HTTP through nginx (gthread)",
        "fast",
        paired_ratio(runs, ("nginx-gthread-tls", "fast"), ("nginx-gthread", "fast")),
        workload="fast",
    )
    for workload in ("fast", "io"):
        add(
            "host port (docker-proxy) vs inside the network",
            f"nginx → gthread, {workload}",
            paired_ratio(runs, ("hostport-gthread", workload), ("nginx-gthread", workload)),
            workload=workload,
        )
    return out


def _find(ratio_list: list[dict], group_prefix: str, name: str) -> dict | None:
    for r in ratio_list:
        if r["group"].startswith(group_prefix) and r["name"] == name:
            return r
    return None


def targets(ratio_list: list[dict]) -> list[dict]:
    """The issue's targets, met or not (None: not measured in this run)."""
    out = []

    def add(name: str, value: dict | None, threshold: float) -> None:
        out.append(
            {
                "target": name,
                "measured": value["median"] if value else None,
                "range": [value["min"], value["max"]] if value else None,
                "threshold": threshold,
                "met": (value["median"] >= threshold) if value else None,
            }
        )

    for cls in CLASSES:
        add(
            f"nginx → gunicorn {cls} keeps ≥ 85 % of direct gunicorn {cls} on the fast endpoint",
            _find(ratio_list, "proxy cost", f"{cls}, fast"),
            0.85,
        )
    add(
        "nginx → gunicorn gevent reaches ≥ 90 % of the ideal I/O throughput",
        _find(ratio_list, "vs the ideal", "nginx-gevent"),
        0.90,
    )
    add(
        "nginx → gunicorn gevent ≥ 20 × the threaded=False dev server on I/O",
        _find(ratio_list, "vs the dev server (dev-single)", "nginx-gevent / dev-single, io"),
        20.0,
    )
    for peer in ("nginx-uwsgi-threads", "nginx-uwsgi-gevent"):
        add(
            f"nginx → gunicorn gevent at least equals {peer} on I/O",
            _find(ratio_list, "vs nginx + uWSGI", f"nginx-gevent / {peer}, io"),
            1.0,
        )
    # Its balanced bursts must not cost the clients a FIFO server would answer.
    add(
        "nginx → gunicorn gthread answers at least the share of clients stock gthread answers under sustained overload",
        _find(ratio_list, "the project's gthread class vs gunicorn's own, under sustained", "io"),
        1.0,
    )
    # Like for like, with the same worker and thread budget, on every workload.
    for ours, peer in (("nginx-gthread", "nginx-uwsgi-threads"), ("nginx-gevent", "nginx-uwsgi-gevent")):
        for workload in ("fast", "cpu", "mix") if ours == "nginx-gevent" else ("fast", "io", "cpu", "mix"):
            add(
                f"{ours} at least equals {peer} on {workload}",
                _find(ratio_list, "vs nginx + uWSGI", f"{ours} / {peer}, {workload}"),
                1.0,
            )
    return out


# --- writing ------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "–"
    if digits == 0 and abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.{max(digits, 1 if abs(value) < 10 else 0)}f}{unit}"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _cores(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _cpu_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def _ratio(r: dict | None) -> str:
    if not r:
        return "–"
    if r["n"] > 1:
        return f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})"
    return f"{r['median']:.2f}"


#: Left out of the README's copy of the tables (results.md has them all).
README_SKIPS = ("vs the dev server (dev-processes)",)


def markdown(results: dict, skip_groups: tuple[str, ...] = ()) -> str:
    meta = results["meta"]
    configs = {c["key"]: c for c in results["configs"]}
    lines = []
    machine = meta["machine"]
    lines += [
        f"Measured **{meta['date']}** with `make bench{' QUICK=1' if meta['profile']['quick'] else ''}` "
        f"(profile *{meta['profile']['name']}*: {meta['profile']['repetitions']} repetition(s) of "
        f"{meta['profile']['duration']:.0f} s per configuration and workload, interleaved, after a "
        f"{meta['profile']['warmup']:.0f} s warm-up; medians, with the min–max spread over repetitions), "
        f"on {machine['cpus']} cores ({machine['cpu_model']}), {machine['memory_gib']:.0f} GiB, "
        f"{machine['os']}, kernel {machine['kernel']}, Docker engine {machine['docker_engine']}, "
        f"Compose {machine['compose']}; commit {_commit(meta['commit'])}. Every app server container is limited to "
        f"{meta.get('app_cpus', '?')} CPUs"
        + (f"; extra gunicorn options: `{meta['gunicorn_args']}`" if meta.get("gunicorn_args") else "")
        + ". "
        f"Lab duration: {meta['elapsed_s'] / 60:.1f} min.",
        "",
        *_sessions(results),
        "### Targets",
        "",
        "| target | measured (range) | threshold | met |",
        "| --- | --- | --- | --- |",
    ]
    for t in results["targets"]:
        measured = (
            "not measured"
            if t["measured"] is None
            else (f"{t['measured']:.2f}" + (f" ({t['range'][0]:.2f}–{t['range'][1]:.2f})" if t["range"] else ""))
        )
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {t['target']} | {measured} | {t['threshold']:g} | {met} |")

    lines += ["", "### Throughput (req/s, median of the repetitions)", ""]
    workloads = results["workloads"]
    header = "| configuration | " + " | ".join(w["label"] for w in workloads) + " |"
    lines += [header, "| --- |" + " --- |" * len(workloads)]
    cells = {(s["config"], s["workload"]): s for s in results["summary"]}
    for key, config in configs.items():
        row = [config["label"]]
        for w in workloads:
            s = cells.get((key, w["key"]))
            row.append("–" if s is None else _fmt(s["rps"]))
        lines.append("| " + " | ".join(row) + " |")

    for w in workloads:
        lines += [
            "",
            f"### {w['label']}: {w['description']}",
            "",
            "| configuration | req/s | spread | p50 ms | p99 ms | errors | served "
            "| CPU cores: generator / app / front | CPU ms per request: app / front | other CPU | busiest worker |",
            "| --- |" + " ---: |" * 10,
        ]
        for key, config in configs.items():
            s = cells.get((key, w["key"]))
            if s is None:
                continue
            lines.append(
                "| "
                + " | ".join(
                    [
                        config["label"],
                        _fmt(s["rps"]),
                        f"{_fmt(s['rps_min'])}–{_fmt(s['rps_max'])}" if s["runs"] > 1 else "–",
                        _ms(s["p50_ms"]),
                        _ms(s["p99_ms"]),
                        str(s["errors"]),
                        _pct(s["served_share"]),
                        " / ".join(_cores(s[k]) for k in ("generator_cpu", "app_cpu", "front_cpu")),
                        " / ".join(_cpu_ms(s[k]) for k in ("app_cpu_ms_per_request", "front_cpu_ms_per_request")),
                        _cores(s["other_cpu"]),
                        _pct(s["busiest_worker_share"]),
                    ]
                )
                + " |"
            )

    lines += ["", "### Ratios measured in the same run (median, min–max over repetitions)", ""]
    groups: dict[str, list[dict]] = {}
    for r in results["ratios"]:
        if r["group"] not in skip_groups:
            groups.setdefault(r["group"], []).append(r)
    for group, items in groups.items():
        lines += [f"**{group}**", "", "| | ratio |", "| --- | --- |"]
        lines += [f"| {r['name']} | {_ratio(r)} |" for r in items]
        lines.append("")

    lines += _front_cpu(results)
    lines += ["### Configurations", "", "| configuration | settings | as the server reports them |"]
    lines += ["| --- | --- | --- |"]
    for key, config in configs.items():
        effective = results["described"].get(key, {}).get("effective", {})
        shown = ", ".join(
            f"{k}={v}"
            for k, v in sorted(effective.items(), key=lambda kv: (kv[0].startswith("UWSGI_"), kv[0]))
            if k
            in (
                "worker_class",
                "workers",
                "threads",
                "worker_connections",
                "keepalive",
                "timeout",
                "max_concurrent_requests",
                "command",
            )
            or k.startswith("UWSGI_")
            or k == "GUNICORN_CMD_ARGS"
        )
        front = results["described"].get(key, {}).get("front_effective", {})
        if front:
            shown = ", ".join([*(f"{k}={v}" for k, v in front.items() if k != "modules"), shown])
        lines.append(f"| {config['label']} | {config['settings']} | {shown or '–'} |")
    iso = results.get("isolation", {})
    if iso:
        lines += [
            "",
            "Development servers (never published): "
            + "; ".join(
                f"{k}: in {v['shares_namespace_of']}'s network namespace "
                f"(`{v['network_mode'][:22]}…`, whose own network mode is `{v['holder_network_mode']}`), "
                f"interfaces {', '.join(v['interfaces'])}, listening on {', '.join(v['listening'])}, "
                f"published ports: {v['published_ports'] or 'none'}, "
                f"answers on the host's loopback: {'**yes**' if v['reachable_from_host'] else 'no'}"
                for k, v in iso.items()
            )
            + ".",
        ]
    lines += [
        "",
        "Columns: *spread* is the min–max of req/s over the repetitions; *errors* counts socket errors and "
        "non-2xx answers (wrk), failures (locust); *served* is Little's law (req/s × mean latency ÷ "
        "connections): well below 100 % means many connections waited the whole run for an answer, so the "
        "latency percentiles, taken over answered requests only, flatter the server; the CPU columns are "
        "cores used during the run (1.00 = one core busy) and CPU time per answered request (*front*: the "
        "proxy in front of the app server, nginx or Apache; for the "
        "CPU-bound workload it includes the work itself); *other CPU* is what else this machine ran "
        "meanwhile (docker-proxy, other containers, other users); *busiest worker* is the share of the app "
        "server's worker CPU time that its busiest worker used (1/3 is perfect balance with 3 workers).",
    ]
    return "\n".join(lines) + "\n"


def _commit(commit: str, why: bool = True) -> str:
    """The commit measured, flagged when it is none: `+changes` (bench's
    commit()) is a tree with uncommitted changes, which nobody can check out
    and measure again. The lab no longer publishes from one; earlier figures
    may still have been."""
    if commit.endswith("+changes") or commit == "?":
        said = ": uncommitted changes, not reproducible; measure again from a commit" if why else ""
        return f"`{commit}` (**not a commit**{said})"
    return f"`{commit}`"


def _sessions(results: dict) -> list[str]:
    """Which lab session each configuration's figures come from, when the
    file holds more than one (a `--configs` run merged into a full one)."""
    sessions = results.get("sessions") or {}
    if len(sessions) < 2:
        return []
    labels = {c["key"]: c["label"] for c in results["configs"]}
    lines = [
        "These figures come from more than one lab session (a run of some configurations merged into an "
        "earlier one of the same profile); ratios pair runs of the same session and pass only.",
        "",
        "| session | date | commit | lab duration | configurations measured in it |",
        "| --- | --- | --- | --- | --- |",
    ]
    for session_id, session in sorted(sessions.items(), key=lambda kv: kv[1]["date"]):
        names = ", ".join(labels.get(k, k) for k in session["configs"])
        if session.get("partners"):
            names += " (and, for these ratios only, " + ", ".join(labels.get(k, k) for k in session["partners"]) + ")"
        lines.append(
            f"| `{session_id}` | {session['date']} | {_commit(session['commit'], why=False)} | "
            f"{session['elapsed_s'] / 60:.1f} min | {names} |"
        )
    return [*lines, ""]


def _front_cpu(results: dict) -> list[str]:
    """Apache beside nginx in front of the same gunicorn class: req/s and the
    front's CPU per request, each the median over the passes of the
    session(s) that measured Apache (nginx's from the same passes, not from
    its own table row, which may be an earlier session's), and the ratios
    paired pass by pass."""
    paired = {(r["group"], r["name"]): r for r in results["ratios"]}
    rows = []
    for cls in CLASSES:
        for w in results["workloads"]:
            apache = [r for r in results["runs"] if r["config"] == f"apache-{cls}" and r["workload"] == w["key"]]
            sessions = {r.get("session") for r in apache}
            nginx = [
                r
                for r in results["runs"]
                if r["config"] == f"nginx-{cls}" and r["workload"] == w["key"] and r.get("session") in sessions
            ]
            if not apache or not nginx:
                continue
            name = f"{cls}, {w['key']}"
            rows.append(
                "| "
                + " | ".join(
                    [
                        cls,
                        w["label"],
                        _fmt(_median(r["rps"] for r in nginx)),
                        _fmt(_median(r["rps"] for r in apache)),
                        _ratio(paired.get((APACHE_GROUP, name))),
                        _cpu_ms(_median(r.get("front_cpu_ms_per_request") for r in nginx)),
                        _cpu_ms(_median(r.get("front_cpu_ms_per_request") for r in apache)),
                        _ratio(paired.get((APACHE_CPU_GROUP, name))),
                    ]
                )
                + " |"
            )
    if not rows:
        return []
    return [
        "### Apache beside nginx in front of the same gunicorn, in the same passes",
        "",
        "| gunicorn class | workload | nginx req/s | Apache req/s | Apache / nginx req/s (range) "
        "| nginx CPU ms per request | Apache CPU ms per request | Apache / nginx CPU per request (range) |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | --- |",
        *rows,
        "",
    ]


def session_of(meta: dict) -> str:
    """A run's lab session: its start, as results.json's meta names it (the
    date, for files written before sessions were recorded)."""
    return meta.get("session") or meta["date"]


def session_entry(meta: dict, configs: list[str]) -> dict:
    return {
        "date": meta["date"],
        "commit": meta["commit"],
        "elapsed_s": meta["elapsed_s"],
        "profile": meta["profile"]["name"],
        "configs": configs,
    }


def merge(previous: dict, current: dict) -> dict:
    """The current session's results beside an earlier file's (same
    profile): the runs, descriptions and sessions of the configurations
    measured now replace theirs, every other configuration keeps its own,
    each run keeps its session. A configuration measured now only as a
    partner (meta's `partners`) that the earlier file holds keeps its
    earlier runs too, which the summary and its other ratios use; its new
    runs are marked `partner` and serve the ratios of this session. The
    summary, ratios and targets are left to be computed again over the
    merged runs. The header's meta stays the earlier file's (most figures
    are its); `sessions` says which session each configuration comes from."""
    before = {r["config"] for r in previous["runs"]}
    partners = [k for k in current["meta"].get("partners", []) if k in before]
    measured = [c["key"] for c in current["configs"] if c["key"] not in partners]
    earlier = session_of(previous["meta"])
    # An earlier session's partner runs are superseded by this one's.
    runs = [
        {**r, "session": r.get("session", earlier)}
        for r in previous["runs"]
        if r["config"] not in measured and not (r.get("partner") and r["config"] in partners)
    ]
    runs += [{**r, "partner": True} if r["config"] in partners else r for r in current["runs"]]
    kept = {r["config"] for r in runs}
    by_key = {c["key"]: c for c in previous["configs"]} | {c["key"]: c for c in current["configs"]}
    order = list(CONFIGS_BY_KEY) + [k for k in by_key if k not in CONFIGS_BY_KEY]
    configs = [by_key[k] for k in order if k in by_key and k in kept]
    workloads = list(previous["workloads"]) + [
        w for w in current["workloads"] if w["key"] not in {p["key"] for p in previous["workloads"]}
    ]
    sessions = {}
    for session_id, session in (
        previous.get("sessions") or {earlier: session_entry(previous["meta"], [c["key"] for c in previous["configs"]])}
    ).items():
        left = [k for k in session["configs"] if k not in measured and k in kept]
        if left:
            sessions[session_id] = {**session, "configs": left}
    sessions[session_of(current["meta"])] = {**session_entry(current["meta"], measured), "partners": partners}

    def replaced(name: str) -> dict:
        return {k: v for k, v in previous.get(name, {}).items() if k not in measured} | current.get(name, {})

    return {
        **previous,
        "configs": configs,
        "workloads": workloads,
        "described": replaced("described"),
        "isolation": replaced("isolation"),
        "runs": runs,
        "sessions": sessions,
    }


RUN_FIELDS = [
    "session",
    "rep",
    "config",
    "workload",
    "tool",
    "connections",
    "requests",
    "seconds",
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "errors_total",
    "errors",
    "served_share",
    "generator_cpu",
    "app_cpu",
    "front_cpu",
    "host_busy",
    "other_cpu",
    "busiest_worker_share",
    "worker_cpu_s",
    "app_cpu_ms_per_request",
    "front_cpu_ms_per_request",
    "generator_cpu_ms_per_request",
    "drain_s",
]


def write(results: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    path = out_dir / "results.json"
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    written.append(path)

    path = out_dir / "runs.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RUN_FIELDS)
        writer.writeheader()
        for run in results["runs"]:
            row = {k: run.get(k) for k in RUN_FIELDS}
            for k in ("p50", "p90", "p99", "p999", "max", "mean"):
                row[f"{k}_ms"] = run["latency_ms"][k]
            row["errors"] = json.dumps(run["errors"])
            row["worker_cpu_s"] = json.dumps(run.get("worker_cpu_s")) if run.get("worker_cpu_s") else ""
            writer.writerow(row)
    written.append(path)

    path = out_dir / "summary.csv"
    with path.open("w", newline="") as f:
        fields = list(results["summary"][0].keys()) if results["summary"] else ["config"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(results["summary"])
    written.append(path)

    body = markdown(results)
    path = out_dir / "results.md"
    path.write_text("# Concurrency lab: results\n\n" + body + "\nThe plots: throughput.png, latency.png.\n")
    written.append(path)

    readme = out_dir / "README.md"
    if readme.exists():
        text = readme.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            readme.write_text(f"{head}{BEGIN}\n{markdown(results, README_SKIPS)}{END}{tail}")
            written.append(readme)
    return written
