#!/usr/bin/env python3
"""Write the Docker Swarm stack file (make swarm-up) from the product's
compose file, so that it is never a second copy kept by hand.

    scripts/swarm-stack.py APP_IMAGE NGINX_IMAGE < merged-config.json > stack.json

The input is `docker compose config --format json` of docker-compose.yml with
deploy/swarm/compose.swarm.yml over it: the Compose Specification, includes
and variables resolved. `docker stack deploy` reads Compose file format 3,
which has no `include`, no profiles and no build, names resource limits under
`deploy.resources`, and ignores some settings. Each is moved or dropped here
(no tool converts between the two formats); what Swarm cannot apply is
printed on stderr, and docs/scaling.md says what stands in for it. JSON is
YAML, so the output is a stack file as it is.
"""

from __future__ import annotations

import json
import sys

#: Settings Swarm services do not have, and why dropping each is safe here.
IGNORED = {
    "build": "images are built first, then named by their content",
    "depends_on": "nginx finds the app's tasks through DNS as they come",
    "restart": "deploy.restart_policy restarts tasks",
    "security_opt": "no-new-privileges: Swarm cannot set it; the images run as non-root users with no capabilities",
    "pids_limit": "Swarm services have no process limit in the stack file format",
    "cpu_shares": "Swarm schedules by deploy.resources reservations instead",
    "profiles": "the stack holds the product only",
}


def service(name: str, spec: dict, image: str) -> dict:
    out = {key: value for key, value in spec.items() if key not in IGNORED and value is not None}
    for key in sorted(IGNORED.keys() & spec.keys()):
        print(f"swarm-stack: {name}.{key} dropped: {IGNORED[key]}", file=sys.stderr)
    out["image"] = image
    if not out.get("deploy", {}).get("placement"):
        out.get("deploy", {}).pop("placement", None)
    limits = out.setdefault("deploy", {}).setdefault("resources", {}).setdefault("limits", {})
    if "mem_limit" in out:
        limits.setdefault("memory", out.pop("mem_limit"))
    if "cpus" in out:
        cpus = out.pop("cpus")
        if float(cpus):
            limits["cpus"] = str(cpus)
    # Swarm ignores the `tmpfs` key: a tmpfs is a mount there.
    tmpfs = out.pop("tmpfs", [])
    out["volumes"] = [*out.get("volumes", []), *({"type": "tmpfs", "target": path} for path in tmpfs)]
    # Environment values as strings.
    out["environment"] = {k: str(v) for k, v in (out.get("environment") or {}).items() if v is not None}
    out["networks"] = sorted(out.get("networks") or {})
    for port in out.get("ports", []):
        port.pop("host_ip", None)  # format 3 cannot bind one address: docs/scaling.md
        port["published"] = int(port["published"])
    if "stop_grace_period" in out:
        out["stop_grace_period"] = str(out["stop_grace_period"])
    return out


def network(spec: dict) -> dict:
    # Overlay networks span the nodes; bridge-only options do not apply.
    return {"driver": "overlay", **({"internal": True} if spec.get("internal") else {})}


def secret(spec: dict) -> dict:
    # Swarm makes a secret of the file's content at deploy (scripts/ensure-secrets.sh made it).
    return {"file": spec["file"]}


def main(app_image: str, nginx_image: str) -> None:
    config = json.load(sys.stdin)
    images = {"app": app_image, "nginx": nginx_image}
    for name in sorted(config["services"].keys() - images.keys()):
        # The bundled database (COMPOSE_PROFILES=db) is Compose's: in a swarm
        # the database is a managed one or an operator's (DATABASE_URL).
        print(f"swarm-stack: service {name} left out: the stack is the product's nginx and app", file=sys.stderr)
    stack = {
        "version": "3.8",
        "services": {
            name: service(name, spec, images[name]) for name, spec in config["services"].items() if name in images
        },
        "networks": {name: network(spec) for name, spec in config.get("networks", {}).items()},
        "secrets": {name: secret(spec) for name, spec in config.get("secrets", {}).items()},
        # The named volumes the kept services mount (the static files'): local
        # volumes of the stack, on each node.
        "volumes": {
            mount["source"]: {}
            for name, spec in config["services"].items()
            if name in images
            for mount in spec.get("volumes", [])
            if mount.get("type") == "volume"
        },
    }
    json.dump(stack, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:])
