#!/usr/bin/env python3
"""The database connection budget of Kubernetes overlays, from their manifests:

    scripts/kubernetes-budget.py [--max-connections N] [--superuser-reserved N] [--reserved N] OVERLAY...

OVERLAY is a directory under deploy/kubernetes/overlays/ (or a path to any
kustomization). Each is rendered with `kustomize build`, and the sum
docs/database.md gives is read from what it renders, never from a copy:

    (the autoscaler's most replicas + the Deployment's maxSurge)
      x workers per replica x connections per worker + DATABASE_RESERVED_CONNECTIONS
      <= max_connections - superuser_reserved_connections - reserved_connections

- the most replicas: the HorizontalPodAutoscaler's maxReplicas, or KEDA's
  ScaledObject's maxReplicaCount (its default, 100, when unset), for
  Deployment/app; a rollout at that size adds maxSurge (a percentage of it,
  rounded up, as Kubernetes rounds);
- workers and connections: the app container's environment and CPU limit,
  as serving/settings.py reads them in the pod (WEB_CONCURRENCY, or
  2 x CPUs + 1; DATABASE_POOL_SIZE, or its default for the worker class),
  one pool per worker, as most apps have (`python -m serving.budget` counts
  the app's real pools against the server on Compose);
- the server's limits are given: PostgreSQL's defaults unless told.

One line per overlay; an overlay over the limit is one line on stderr naming
it and its figures, and the exit status is 2. `make kubernetes-budget` runs
it on every overlay; tests/unit/test_kubernetes.py too.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from serving.budget import Budget  # noqa: E402 - after the checkout is importable
from serving.settings import SettingsError, load  # noqa: E402

OVERLAYS = REPO / "deploy" / "kubernetes" / "overlays"
#: The Deployment the autoscaler sizes, and its gunicorn container.
APP = "app"
#: PostgreSQL's defaults.
MAX_CONNECTIONS = 100
SUPERUSER_RESERVED = 3
#: KEDA's maxReplicaCount when a ScaledObject leaves it out.
KEDA_MAX_REPLICAS = 100
#: Kubernetes' maxSurge when a Deployment leaves it out.
DEFAULT_SURGE = "25%"


class BudgetError(Exception):
    """What makes an overlay's budget impossible to compute: one line."""


def render(overlay: str) -> list[dict]:
    path = Path(overlay) if "/" in overlay else OVERLAYS / overlay
    if not (path / "kustomization.yaml").is_file():
        known = ", ".join(sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()))
        raise BudgetError(f"no kustomization.yaml in {path} (the overlays: {known})")
    kustomize = shutil.which("kustomize")
    if kustomize is None:
        raise BudgetError("kustomize is not installed (scripts/ensure-kustomize.sh installs it)")
    result = subprocess.run([kustomize, "build", str(path)], capture_output=True, text=True, check=False)
    if result.returncode:
        raise BudgetError(f"kustomize build {path} failed: {(result.stderr.strip().splitlines() or ['?'])[0]}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def only(objects: list[dict], kind: str, what: str) -> dict | None:
    """The one object of `kind` that targets or is Deployment/app."""
    found = [o for o in objects if o["kind"] == kind and what_it_names(o) == APP]
    if len(found) > 1:
        raise BudgetError(f"{len(found)} {kind}s for Deployment/{APP} ({what})")
    return found[0] if found else None


def what_it_names(obj: dict) -> str:
    if obj["kind"] == "Deployment":
        return obj["metadata"]["name"]
    return obj["spec"].get("scaleTargetRef", {}).get("name", "")


def most_replicas(objects: list[dict]) -> tuple[int, str]:
    """The most replicas the overlay lets Deployment/app have, and who says so."""
    hpa = only(objects, "HorizontalPodAutoscaler", "an autoscaler")
    keda = only(objects, "ScaledObject", "KEDA")
    if hpa and keda:
        raise BudgetError(
            f"both a HorizontalPodAutoscaler and a ScaledObject scale Deployment/{APP}: KEDA makes its own"
        )
    if hpa:
        return hpa["spec"]["maxReplicas"], "HPA maxReplicas"
    if keda:
        return keda["spec"].get("maxReplicaCount", KEDA_MAX_REPLICAS), "ScaledObject maxReplicaCount"
    deployment = only(objects, "Deployment", "the app")
    return deployment["spec"].get("replicas", 1), "replicas"


def surge(deployment: dict, replicas: int) -> int:
    raw = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", DEFAULT_SURGE)
    if isinstance(raw, str) and raw.endswith("%"):
        return math.ceil(replicas * int(raw[:-1]) / 100)
    return int(raw)


def cpus(quantity: str) -> int:
    """A CPU limit as the cores gunicorn's default counts: rounded up."""
    return math.ceil(int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity))


def budget(objects: list[dict], max_connections: int, superuser_reserved: int, role_reserved: int) -> Budget:
    deployment = only(objects, "Deployment", "the app")
    if deployment is None:
        raise BudgetError(f"no Deployment/{APP}")
    (app,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == APP]
    limit = app.get("resources", {}).get("limits", {}).get("cpu")
    if limit is None:
        raise BudgetError(f"the {APP} container has no CPU limit, which its default worker count follows")
    # Only literal values: a Secret's or the downward API's are not settings.
    env = {item["name"]: item["value"] for item in app.get("env", []) if "value" in item}
    try:
        settings = load(env, cpus=cpus(str(limit)))
    except SettingsError as exc:
        raise BudgetError(f"the {APP} container's environment: {exc}") from None
    replicas, _ = most_replicas(objects)
    return Budget(
        replicas=replicas,
        workers=settings.workers,
        per_worker=settings.database_pool_size,
        reserved=settings.database_reserved_connections,
        max_connections=max_connections,
        superuser_reserved=superuser_reserved,
        role_reserved=role_reserved,
        share=settings.database_pool_size,
        surge=surge(deployment, replicas),
    )


def describe(objects: list[dict], b: Budget) -> str:
    _, source = most_replicas(objects)
    return (
        f"({source} {b.replicas} + maxSurge {b.surge}) x {b.workers} workers x {b.per_worker} "
        f"connections per worker (DATABASE_POOL_SIZE) + DATABASE_RESERVED_CONNECTIONS {b.reserved} = "
        f"{b.needed} connections; max_connections {b.max_connections} less {b.superuser_reserved} "
        f"superuser-reserved and {b.role_reserved} reserved allows {b.allowed}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overlays", nargs="+", metavar="OVERLAY", help="under deploy/kubernetes/overlays/, or a path")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, help="the server's (default 100)")
    parser.add_argument(
        "--superuser-reserved", type=int, default=SUPERUSER_RESERVED, help="superuser_reserved_connections (default 3)"
    )
    parser.add_argument("--reserved", type=int, default=0, help="reserved_connections, PostgreSQL 16+ (default 0)")
    args = parser.parse_args(argv)
    status = 0
    for overlay in args.overlays:
        name = Path(overlay).name
        try:
            objects = render(overlay)
            b = budget(objects, args.max_connections, args.superuser_reserved, args.reserved)
        except BudgetError as exc:
            print(f"kubernetes-budget: {name}: {exc}", file=sys.stderr)
            status = 2
            continue
        if b.fits():
            print(f"{name}: {describe(objects, b)}")
        else:
            print(f"kubernetes-budget: {name}: over the database's limit: {describe(objects, b)}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
