"""Kubernetes' /static/ (deploy/kubernetes/, docs/static.md), run on this
Docker engine since no cluster runs here: the containers of the rendered
production overlay, started as the manifests start them (command, user,
read-only root, capabilities, mounts, nginx's environment), on one network
where the app pods' headless Service name resolves to both pods, as
cluster DNS does.

Each app pod's `static` container serves the files its app published, and
nginx's pod, with the overlay's /static/ snippet and upstream in place of
Compose's, asks the app pods for them, and the next pod on a 404: during a
rollout, one pod has the files of a release the other lacks, and both
releases' pages find theirs. What only a cluster shows (probes, the
migration Job, scaling) is listed in docs/scaling.md as not checked.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
import requests
import yaml

from harness.stack import REPO, free_port
from tests.unit.test_kubernetes import container_of

pytestmark = pytest.mark.integration

OVERLAY = REPO / "deploy" / "kubernetes" / "overlays" / "production"
NAMESPACE = "flask-concurrency"
APP_IMAGE = "flask-concurrency-test/app:local"
NGINX_IMAGE = "flask-concurrency-test/nginx:local"
#: A file of the next release, which only the second pod has (hashed, as the
#: build names them: nginx's immutable location).
NEXT_RELEASE = "next-release-0123456789abcdef0123456789abcdef.css"


def docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, (args, result.stderr[-2000:])
    return result.stdout.strip()


def rendered() -> list[dict]:
    subprocess.run([str(REPO / "scripts" / "ensure-kustomize.sh")], check=True, capture_output=True, timeout=600)
    out = subprocess.run(["kustomize", "build", str(OVERLAY)], capture_output=True, text=True, check=True).stdout
    return [o for o in yaml.safe_load_all(out) if o]


def config_map(objects: list[dict], prefix: str) -> dict[str, str]:
    """A ConfigMap by its name before kustomize's hash suffix."""
    (found,) = [
        o["data"] for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    return found


def run_options(spec: dict) -> list[str]:
    """`docker run` options for what the manifest's securityContext says."""
    security = spec["securityContext"]
    options = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}", "--security-opt", "no-new-privileges"]
    if security.get("readOnlyRootFilesystem"):
        options += ["--read-only", "--tmpfs", "/tmp"]
    if security["capabilities"]["drop"] == ["ALL"]:
        options += ["--cap-drop", "ALL"]
    return options


def command_line(spec: dict, image: str) -> list[str]:
    """The image and its command as Kubernetes runs them: `command` replaces
    the image's entrypoint, `args` its CMD."""
    command = spec.get("command")
    head = ["--entrypoint", command[0], image, *command[1:]] if command else [image]
    return head + list(spec.get("args", []))


def environment(spec: dict) -> list[str]:
    """The container's env, the downward API's namespace filled in as the
    kubelet fills it, and $(VAR) references expanded."""
    values: dict[str, str] = {}
    for variable in spec.get("env", []):
        if "value" in variable:
            value = variable["value"]
            for name, known in values.items():
                value = value.replace(f"$({name})", known)
            values[variable["name"]] = value
        elif variable["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            values[variable["name"]] = NAMESPACE
    return [option for name, value in values.items() for option in ("-e", f"{name}={value}")]


@pytest.fixture(scope="module")
def cluster_stand_in(built_images, tmp_path_factory):
    objects = rendered()
    scratch = tmp_path_factory.mktemp("k8s-static")
    server_conf = scratch / "static-server.conf"
    server_conf.write_text(config_map(objects, "static-server")["nginx.conf"])
    source = config_map(objects, "nginx-static-source")
    snippet, upstream = scratch / "static-source.conf", scratch / "app-static.conf"
    snippet.write_text(source["static-source"])
    upstream.write_text(source["app-static"])
    for path in (server_conf, snippet, upstream):
        path.chmod(0o644)
    scratch.chmod(0o755)

    run = uuid.uuid4().hex[:8]
    network, names, volumes = f"flask-concurrency-test-k8s-{run}", [], []
    headless = f"app-headless.{NAMESPACE}.svc.cluster.local"
    app, static, nginx = (
        container_of(objects, "app", "app"),
        container_of(objects, "app", "static"),
        container_of(objects, "nginx", "nginx"),
    )
    publish_dir = next(e["value"] for e in app["env"] if e["name"] == "STATIC_PUBLISH_DIR")
    static_root = next(m["mountPath"] for m in static["volumeMounts"] if m["name"] == "static")
    port = free_port()
    docker("network", "create", network)
    try:
        for pod in ("a", "b"):
            volume = f"{network}-{pod}"
            docker("volume", "create", volume)
            volumes.append(volume)
            # The app container publishes its release's files into the pod's
            # volume, as serving/serve.py does at its start.
            docker("run", "--rm", *run_options(app), "-v", f"{volume}:{publish_dir}", APP_IMAGE,
                   "python3", "-m", "serving.static", "publish", publish_dir)  # fmt: skip
            if pod == "b":
                docker("run", "--rm", *run_options(app), "-v", f"{volume}:{publish_dir}", "--entrypoint", "sh",
                       APP_IMAGE, "-c", f"echo '/* the next release */' > {publish_dir}/{NEXT_RELEASE}")  # fmt: skip
            name = f"{network}-static-{pod}"
            docker("run", "-d", "--name", name, "--network", network, "--network-alias", headless,
                   *run_options(static), "-v", f"{volume}:{static_root}:ro",
                   "-v", f"{server_conf}:/etc/nginx/static-server/nginx.conf:ro",
                   *command_line(static, NGINX_IMAGE))  # fmt: skip
            names.append(name)
        name = f"{network}-nginx"
        docker("run", "-d", "--name", name, "--network", network, "-p", f"127.0.0.1:{port}:8080",
               *run_options(nginx), *environment(nginx),
               "-v", f"{snippet}:/etc/nginx/snippets/static-source.conf:ro",
               "-v", f"{upstream}:/etc/nginx/conf.d/app-static.conf:ro", *command_line(nginx, NGINX_IMAGE))  # fmt: skip
        names.append(name)
        url = f"http://127.0.0.1:{port}"
        host = next(e["value"] for e in nginx["env"] if e["name"] == "SERVER_NAMES").split()[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/static/{NEXT_RELEASE}", headers={"Host": host}, timeout=5).status_code:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(
                    subprocess.run(["docker", "logs", n], capture_output=True, text=True).stderr[-1500:] for n in names
                )
                raise AssertionError(f"nginx did not answer within 30 s:\n{logs}")
            time.sleep(0.5)
        yield {"url": url, "host": host, "names": names, "publish_dir": publish_dir}
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        for volume in volumes:
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def get(stand_in: dict, path: str) -> requests.Response:
    return requests.get(stand_in["url"] + path, headers={"Host": stand_in["host"]}, timeout=10)


def published_stylesheet(stand_in: dict) -> str:
    """A hashed stylesheet of the release both pods have."""
    listing = docker("exec", stand_in["names"][0], "ls", "/usr/share/nginx/static")
    (name,) = [n for n in listing.split() if n.startswith("demo-") and n.endswith(".css")]
    return name


def test_every_container_started_as_the_manifests_start_them_and_stays_up(cluster_stand_in):
    for name in cluster_stand_in["names"]:
        assert docker("inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name) == "true 0", name
        top = docker("top", name, "-eo", "uid,pid").split()[2::2]
        assert top and "0" not in top, (name, top)


def test_a_file_both_pods_have_is_served_through_nginx_with_the_sites_headers(cluster_stand_in):
    stylesheet = published_stylesheet(cluster_stand_in)
    for _ in range(6):
        answer = get(cluster_stand_in, f"/static/{stylesheet}")
        assert answer.status_code == 200, answer.text[:300]
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert answer.headers["Content-Type"].startswith("text/css")
        assert "X-Content-Type-Options" in answer.headers


def test_a_file_only_the_next_releases_pod_has_is_always_found_through_the_next_pod(cluster_stand_in):
    # nginx balances over both pods: about half of these go first to the pod
    # without the file, whose 404 sends them on to the other.
    answers = [get(cluster_stand_in, f"/static/{NEXT_RELEASE}") for _ in range(20)]
    assert [a.status_code for a in answers] == [200] * 20, [(a.status_code, a.text[:100]) for a in answers]
    assert all(a.text == "/* the next release */\n" for a in answers)


def test_a_file_no_pod_has_is_nginxs_own_json_404_and_hidden_files_are_not_served(cluster_stand_in):
    for path in ("/static/nowhere-0123456789abcdef0123456789abcdef.css", "/static/nowhere.css", "/static/.manifests/"):
        answer = get(cluster_stand_in, path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.headers["Content-Type"].startswith("application/json"), (path, answer.text[:200])
