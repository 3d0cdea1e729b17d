"""The proxy's settings, measured: the project's nginx against variants of
itself, each one setting changed, in front of the same gunicorn on /healthz.

    .venv/bin/python -m bench.nginx_settings [--worker-class gevent] [--rounds 4] [--seconds 5]

A side experiment beside the lab (docs/benchmarks/README.md, "what the
proxy costs"): the lab's images and network, gunicorn direct as the
reference, then every variant's nginx run for run in rounds, so that drift
on the machine falls on all of them alike. Each variant is the image's own
/etc/nginx with one text replaced (VARIANTS), mounted read-only over it; a
replacement that no longer applies stops the run (and fails a unit test).
It prints req/s, the ratio to direct gunicorn and to the unchanged nginx,
and the CPU each side spent per request. The lab's own containers come and
go with it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import cpu, generators
from bench.lab import PROJECT, Lab, LabError, stderr_log
from bench.matrix import CONFIGS_BY_KEY, QUICK, workloads

NGINX_IMAGE = "flask-concurrency/nginx:local"
CONNECTIONS = 64

#: name -> (file under /etc/nginx, text in it, replacement), one setting each.
VARIANTS: dict[str, list[tuple[str, str, str]]] = {
    "as shipped": [],
    "worker_processes 1": [("nginx.conf", "worker_processes auto;", "worker_processes 1;")],
    "worker_cpu_affinity auto": [
        ("nginx.conf", "worker_processes auto;", "worker_processes auto;\nworker_cpu_affinity auto;")
    ],
    "access_log off": [
        ("snippets/access-log.conf", "access_log /dev/stdout json_upstream buffer=64k flush=1s;", "access_log off;")
    ],
    "access_log buffer=256k flush=5s": [("snippets/access-log.conf", "buffer=64k flush=1s", "buffer=256k flush=5s")],
    "upstream keepalive 8": [("conf.d/app.conf", "keepalive 32;", "keepalive 8;")],
    "upstream keepalive 128, keepalive_requests 100000": [
        ("conf.d/app.conf", "keepalive 32;", "keepalive 128;\n    keepalive_requests 100000;")
    ],
    "upstream keepalive_requests 100": [
        ("conf.d/app.conf", "keepalive 32;", "keepalive 32;\n    keepalive_requests 100;")
    ],
}


def apply_variant(etc: Path, edits: list[tuple[str, str, str]]) -> None:
    """Make the edits in a copy of /etc/nginx; ValueError if one no longer applies."""
    for relative, old, new in edits:
        path = etc / relative
        text = path.read_text()
        if text.count(old) != 1:
            raise ValueError(f"{relative}: {old!r} is not there exactly once any more")
        path.write_text(text.replace(old, new))


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nginx_settings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-class", choices=("gthread", "gevent"), default="gthread")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args(argv)

    direct, proxied = CONFIGS_BY_KEY[f"gunicorn-{args.worker_class}"], CONFIGS_BY_KEY[f"nginx-{args.worker_class}"]
    fast = tuple(w for w in workloads(quick=False) if w.key == "fast")
    lab = Lab(QUICK, (direct, proxied), fast, log=stderr_log)
    network = f"{PROJECT}_lab-{args.worker_class}"
    # Reached by a name the lab's SERVER_NAMES accepts: nginx-variant-a, ...
    aliases = {variant: f"nginx-variant-{chr(ord('a') + i)}" for i, variant in enumerate(VARIANTS)}
    names = {variant: f"{PROJECT}-{alias}" for variant, alias in aliases.items()}
    scratch = Path(tempfile.mkdtemp(prefix="nginx-settings-"))
    try:
        lab.build()
        lab.up()
        lab.wait_ready()
        image_etc = scratch / "image"
        container = _docker("create", NGINX_IMAGE)
        _docker("cp", f"{container}:/etc/nginx", str(image_etc))
        _docker("rm", container)
        environment = lab.inspect(proxied.front_service or "").config.env
        for i, (variant, edits) in enumerate(VARIANTS.items()):
            etc = scratch / str(i)
            shutil.copytree(image_etc, etc)
            apply_variant(etc, edits)
            # The lab's nginx's hardening and environment; the name matches its SERVER_NAMES.
            _docker(
                "run", "-d", "--name", names[variant], "--network", network, "--network-alias", aliases[variant],
                "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
                *[flag for variable in environment if not variable.startswith("PATH=") for flag in ("-e", variable)],
                "-v", f"{etc}:/etc/nginx:ro", NGINX_IMAGE,
            )  # fmt: skip
        targets = {"gunicorn direct": (f"{direct.base_url}/healthz", None)}
        for variant, name in names.items():
            targets[variant] = (f"http://{aliases[variant]}:8080/healthz", name)
        cpu_files = {
            name: cpu.cgroup_cpu_file(int(_docker("inspect", "-f", "{{.State.Pid}}", name)))
            for name in [*names.values(), lab.container_id(direct.app_service)]
        }
        app_cpu_file = cpu_files[lab.container_id(direct.app_service)]

        def cpu_ns(name: str | None) -> int:
            path = app_cpu_file if name is None else cpu_files[name]
            return cpu.read_cgroup_cpu_ns(path) if path is not None else 0

        def wrk(url: str, seconds: int) -> dict:
            out = lab.exec("loadgen", generators.wrk_command(url, CONNECTIONS, seconds), timeout=seconds + 60).decode()
            result = generators.parse_wrk(out, CONNECTIONS)
            if result is None or any(result["errors"].values()):
                raise LabError(f"{url}: wrk: {out[-400:]}")
            return result

        for url, _ in targets.values():
            wrk(url, 1)
        rows: dict[str, list[tuple[float, float, float]]] = {target: [] for target in targets}
        for round_ in range(1, args.rounds + 1):
            for target, (url, front) in targets.items():
                app_before, front_before = cpu_ns(None), cpu_ns(front) if front else 0
                rps = wrk(url, args.seconds)["rps"]
                requests = rps * args.seconds
                app_ms = (cpu_ns(None) - app_before) / 1e6 / requests
                front_ms = (cpu_ns(front) - front_before) / 1e6 / requests if front else 0.0
                rows[target].append((rps, app_ms, front_ms))
                stderr_log(f"round {round_} {target:50s} {rps:8.0f} req/s")
        print(
            f"\n/healthz, {CONNECTIONS} connections, gunicorn {args.worker_class}, {args.rounds} rounds of "
            f"{args.seconds} s (medians; ratios round by round)\n"
        )
        print("| nginx | req/s | / direct | / as shipped | CPU ms per request: gunicorn / nginx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for target, values in rows.items():

            def ratio(to: str, values: list = values) -> str:
                r = [v[0] / w[0] for v, w in zip(values, rows[to], strict=True)]
                return f"{statistics.median(r):.2f} ({min(r):.2f}–{max(r):.2f})"

            front_ms = "–" if target == "gunicorn direct" else f"{statistics.median(v[2] for v in values):.3f}"
            print(
                f"| {target} | {statistics.median(v[0] for v in values):,.0f} | {ratio('gunicorn direct')} | "
                f"{ratio('as shipped')} | {statistics.median(v[1] for v in values):.3f} / {front_ms} |"
            )
        return 0
    except (LabError, ValueError, subprocess.CalledProcessError) as exc:
        stderr_log(f"nginx_settings failed: {exc} {getattr(exc, 'stderr', '') or ''}")
        return 2
    finally:
        for name in names.values():
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        lab.down()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
