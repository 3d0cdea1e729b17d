"""deploy/kubernetes/: every overlay renders (kustomize), every object is valid
for two Kubernetes versions (kubernetes-validate's schemas, offline), checkov
finds nothing its skip list does not explain, and the values that must agree
with the project are read from it: serving/settings.py, the Dockerfiles,
docker-compose.yml, nginx's configuration. No cluster runs here.

kustomize comes from scripts/ensure-kustomize.sh (skipped, with its reason,
where it cannot be installed); checkov from its own lock and venv
(requirements/policy.txt), in a venv kept in the user's cache and keyed by
the lock (a fresh clone reuses it), created here on first use.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate.utils
import pytest
import yaml

from demo import config
from harness.stack import REPO
from serving.health import LIVENESS_PATH, READINESS_PATH
from serving.settings import BUDGET, VARIABLES, load

pytestmark = pytest.mark.unit

KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = ("development", "production", "ingress")
CHECKOV_CONFIG = KUBERNETES / "checkov.yaml"
POLICY_LOCK = REPO / "requirements" / "policy.txt"
#: Outside the checkout, so that a fresh clone (CI's) does not build it again
#: (about 100 s); one per lock and Python, so that nothing ever updates it.
CHECKOV_VENVS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flask-concurrency"

SETTINGS = {variable.name: variable for variable in (*VARIABLES, BUDGET[0], BUDGET[1])}
APP_SETTINGS = {setting.name: setting for setting in config.VARIABLES}
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
#: nginx's servers in a pod, which serves plain HTTP: every mode's, and the http mode's.
NGINX_CONF = "".join(
    (REPO / "nginx" / path).read_text() for path in ("conf.d/app.conf", "templates/modes/http/servers.conf.template")
)
#: Read from the pods' environment; not one of the project's settings.
NGINX_HELPERS = {"POD_NAMESPACE"}
#: nginx's own variable for a cluster's upstream (nginx/rotation.sh, docs/scaling.md).
NGINX_ASSUMED = {"APP_UPSTREAM_HOST"}


def default(name: str) -> object:
    return SETTINGS[name].default


def bind_port() -> int:
    return int(str(default("GUNICORN_BIND")).rpartition(":")[2])


def seconds(raw: str) -> int:
    return BUDGET[0].parse("duration", raw)


def dockerfile_uid(path: Path) -> int:
    users = re.findall(r"^USER (\d+):(\d+)$", path.read_text(), flags=re.MULTILINE)
    assert users, f"{path}: no numeric USER"
    return int(users[-1][0])


def compose_default(raw: object) -> str:
    """`${NAME:-default}` -> default; a plain value as it is."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", str(raw))
    return match[1] if match else str(raw)


# --- rendering ----------------------------------------------------------------


@pytest.fixture(scope="session")
def kustomize() -> str:
    if not shutil.which("kustomize"):
        result = subprocess.run([str(REPO / "scripts" / "ensure-kustomize.sh")], capture_output=True, text=True)
        if result.returncode != 0 or not shutil.which("kustomize"):
            pytest.skip(
                f"kustomize is not installed and scripts/ensure-kustomize.sh could not: {result.stderr.strip()}"
            )
    return shutil.which("kustomize")


@pytest.fixture(scope="session")
def rendered(kustomize, tmp_path_factory) -> dict[str, Path]:
    """Each overlay, built: overlay -> the YAML file."""
    out = tmp_path_factory.mktemp("kubernetes")
    files = {}
    for overlay in OVERLAYS:
        result = subprocess.run(
            [kustomize, "build", str(KUBERNETES / "overlays" / overlay)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"kustomize build overlays/{overlay}: {result.stderr}"
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(result.stdout)
    return files


@pytest.fixture(scope="session")
def objects(rendered) -> dict[str, list[dict]]:
    return {overlay: [o for o in yaml.safe_load_all(path.read_text()) if o] for overlay, path in rendered.items()}


def find(objs: list[dict], kind: str, name: str) -> dict | None:
    return next((o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name), None)


def container(objs: list[dict], name: str) -> dict:
    deployment = find(objs, "Deployment", name)
    assert deployment, f"no Deployment {name}"
    (main,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return main


def env(main: dict) -> dict[str, dict]:
    return {item["name"]: item for item in main.get("env", [])}


def pause(deployment: dict) -> int:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    command = main["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def with_nginx(objects) -> list[str]:
    return [overlay for overlay, objs in objects.items() if find(objs, "Deployment", "nginx")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders(objects, overlay):
    kinds = {o["kind"] for o in objects[overlay]}
    assert {"Namespace", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    assert "NetworkPolicy" in kinds


def schema_versions() -> list[str]:
    """The two newest Kubernetes minor versions kubernetes-validate ships."""
    minors = {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}
    newest = sorted(minors, key=lambda minor: tuple(int(part) for part in minor.split(".")))[-2:]
    return [f"{minor}.0" for minor in newest]


@pytest.mark.parametrize("version", schema_versions())
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_the_api(objects, overlay, version):
    for obj in objects[overlay]:
        # strict: a field the API does not have (a typo) is an error too.
        kubernetes_validate.utils.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_in_the_overlays_namespace_and_labelled(objects, overlay):
    objs = objects[overlay]
    (namespace,) = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, name
        labels = obj["metadata"].get("labels", {})
        for key in ("name", "instance", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in labels, (name, key)


# --- the app ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_ports_and_probes_are_the_apps(objects, overlay):
    app = container(objects[overlay], "app")
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    assert ports == {"http": bind_port(), "metrics": default("METRICS_PORT")}
    annotations = find(objects[overlay], "Deployment", "app")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(default("METRICS_PORT"))
    readiness, liveness, startup = (app[f"{kind}Probe"]["httpGet"] for kind in ("readiness", "liveness", "startup"))
    # Readiness is the path the server answers 503 on while draining, and
    # that runs the app's checks; liveness, the one that checks nothing
    # (serving/health.py).
    assert readiness["path"] == READINESS_PATH
    assert liveness["path"] == LIVENESS_PATH
    assert startup["path"] == liveness["path"]
    assert {readiness["port"], liveness["port"], startup["port"]} == {"http"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_environment_is_the_projects_settings_and_starts(objects, overlay):
    app = container(objects[overlay], "app")
    variables = env(app)
    for name, item in variables.items():
        if name in APP_SETTINGS:  # the app's own (demo/config.py)
            if "value" in item:
                APP_SETTINGS[name].parse(name, item["value"])
            continue
        assert name in SETTINGS, f"{name} is not a variable serving/settings.py or demo/config.py declares"
        SETTINGS[name].parse(name, item["value"])
    # The secrets are files from the Secret's volume; the URL, without its password, from the Secret.
    mounts = {m["name"]: m["mountPath"] for m in app["volumeMounts"]}
    assert variables["SECRET_KEY_FILE"]["value"] == f"{mounts['secrets']}/secret_key"
    assert variables["DATABASE_PASSWORD_FILE"]["value"] == f"{mounts['secrets']}/db_password"
    assert variables["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "flask-concurrency"
    # The worker count follows the CPU limit: never written down.
    assert "WEB_CONCURRENCY" not in variables
    budget = COMPOSE["x-budget"]
    assert variables["NGINX_PROXY_READ_TIMEOUT"]["value"] == budget["proxy-read-timeout"]
    assert variables["APP_STOP_GRACE_PERIOD"]["value"] == budget["app-stop-grace-period"]
    # The settings this pod would start with, on the CPUs its limit gives it.
    cpus = math.ceil(cpu(app["resources"]["limits"]["cpu"]))
    settings = load({name: item["value"] for name, item in variables.items() if name in SETTINGS}, cpus=cpus)
    assert settings.workers == 2 * cpus + 1


def cpu(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_drains_within_its_grace_period(objects, overlay):
    deployment = find(objects[overlay], "Deployment", "app")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    app_grace = seconds(env(container(objects[overlay], "app"))["APP_STOP_GRACE_PERIOD"]["value"])
    # gunicorn gets SIGTERM after the pause, and then what the app is told it has.
    assert pause(deployment) >= 5
    assert grace - pause(deployment) == app_grace
    assert app_grace > default("GUNICORN_GRACEFUL_TIMEOUT")
    assert grace > pause(deployment) + default("GUNICORN_GRACEFUL_TIMEOUT")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_update_never_lowers_capacity_and_the_autoscaler_owns_the_count(objects, overlay):
    objs = objects[overlay]
    deployment = find(objs, "Deployment", "app")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"]
    hpa = find(objs, "HorizontalPodAutoscaler", "app")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= (1 if overlay == "development" else 2)
    resources = container(objs, "app")["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


def hardened(deployment: dict, uid: int) -> None:
    spec = deployment["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for main in spec["containers"]:
        context = main["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        (tmp,) = [v for v in spec["volumes"] if v["name"] == mounts["/tmp"]]
        assert tmp["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened_as_in_compose_with_the_images_users(objects, overlay):
    objs = objects[overlay]
    hardened(find(objs, "Deployment", "app"), dockerfile_uid(REPO / "Dockerfile"))
    if find(objs, "Deployment", "nginx"):
        hardened(find(objs, "Deployment", "nginx"), dockerfile_uid(REPO / "nginx" / "Dockerfile"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_policies_select_existing_pods(objects, overlay):
    objs = objects[overlay]
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in objs if o["kind"] == "Deployment"]

    def selects(selector: dict) -> bool:
        return any(selector.items() <= labels.items() for labels in pods)

    for obj in objs:
        if obj["kind"] == "Service":
            assert selects(obj["spec"]["selector"]), obj["metadata"]["name"]
        elif obj["kind"] == "PodDisruptionBudget":
            assert selects(obj["spec"]["selector"]["matchLabels"]), obj["metadata"]["name"]
        elif obj["kind"] == "NetworkPolicy" and obj["spec"]["podSelector"]:
            assert selects(obj["spec"]["podSelector"]["matchLabels"]), obj["metadata"]["name"]
    images = [
        c["image"] for o in objs if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]
    ]
    # The overlay names every image with a tag or a digest.
    assert all(re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image.rpartition("/")[2]) for image in images), images


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_nginx_reaches_gunicorn_and_only_monitoring_the_metrics(objects, overlay):
    objs = objects[overlay]
    deny = find(objs, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policy = find(objs, "NetworkPolicy", "app")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Out: the cluster's DNS and PostgreSQL's port, nothing else.
    egress = policy["spec"]["egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in egress] == [[53, 53], [5432]], egress
    assert egress[0]["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    names = {"http": bind_port(), "metrics": default("METRICS_PORT")}
    ports = []
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from") and rule.get("ports"), rule
        (port,) = [names.get(p["port"], p["port"]) for p in rule["ports"]]
        (peer,) = rule["from"]
        ports.append(port)
        if port == bind_port():
            if find(objs, "Deployment", "nginx"):
                assert peer == {"podSelector": {"matchLabels": pod_labels(objs, "nginx")}}
            else:
                assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
        else:
            assert port == default("METRICS_PORT")
            assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    # One rule each: gunicorn's port and the metrics'.
    assert sorted(ports) == sorted([bind_port(), default("METRICS_PORT")]), policy["spec"]["ingress"]


def pod_labels(objs: list[dict], name: str) -> dict:
    return find(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]


# --- nginx --------------------------------------------------------------------


#: Set at start by the image's own hooks, not by the pod (nginx/docker-entrypoint.d/).
NGINX_HOOK_VARIABLES = {"NGINX_LOCAL_RESOLVERS", "NGINX_SITE_MODE"}


def nginx_template_variables() -> set[str]:
    """What nginx/docker-entrypoint.d/18-check-settings.sh requires in the http
    mode (no certificate mounted: TLS ends before nginx): every template's
    variables but the https mode's, less those the hooks set."""
    templates = REPO / "nginx" / "templates"
    sources = [path for path in templates.rglob("*.template") if not path.is_relative_to(templates / "modes" / "https")]
    used = {name for path in sources for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", path.read_text())}
    assert NGINX_HOOK_VARIABLES <= used
    return used - NGINX_HOOK_VARIABLES


def test_nginx_overlays_exist(objects):
    assert with_nginx(objects) == ["development", "production"]


@pytest.mark.parametrize("overlay", ["development", "production"])
def test_nginx_environment_is_composes(objects, overlay):
    variables = env(container(objects[overlay], "nginx"))
    compose_env = COMPOSE["services"]["nginx"]["environment"]
    assert set(variables) == set(compose_env) | NGINX_HELPERS | NGINX_ASSUMED
    assert nginx_template_variables() <= set(variables)
    for name, raw in compose_env.items():
        if name != "SERVER_NAMES":  # the site's own names, the overlay's
            assert variables[name]["value"] == compose_default(raw), name
    # The app is told nginx's timeout; the trusted proxies are nginx's alone.
    app = env(container(objects[overlay], "app"))
    assert variables["NGINX_PROXY_READ_TIMEOUT"]["value"] == app["NGINX_PROXY_READ_TIMEOUT"]["value"]
    assert not {"TRUSTED_PROXY_HOPS", "TRUSTED_PROXY_ADDRESSES"} & set(app)


@pytest.mark.parametrize("overlay", ["development", "production"])
def test_nginx_upstream_is_the_apps_headless_service(objects, overlay):
    objs = objects[overlay]
    variables = list(container(objs, "nginx")["env"])
    names = [item["name"] for item in variables]
    # $(POD_NAMESPACE) is expanded only when defined before its use.
    assert names.index("POD_NAMESPACE") < names.index("APP_UPSTREAM_HOST")
    assert variables[names.index("POD_NAMESPACE")]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    host = variables[names.index("APP_UPSTREAM_HOST")]["value"]
    service, rest = host.split(".", 1)
    assert rest == "$(POD_NAMESPACE).svc.cluster.local"
    headless = find(objs, "Service", service)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"].get("publishNotReadyAddresses", False) is False
    assert headless["spec"]["selector"] == pod_labels(objs, "app")
    # nginx/rotation.sh writes the upstream's port: gunicorn's.
    (rotation_port,) = re.findall(r"^port=(\d+)$", (REPO / "nginx" / "rotation.sh").read_text(), flags=re.MULTILINE)
    assert int(rotation_port) == bind_port()
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]}["http"] == bind_port()


@pytest.mark.parametrize("overlay", ["development", "production"])
def test_nginx_ports_probes_and_stop_are_its_images(objects, overlay):
    objs = objects[overlay]
    nginx = container(objs, "nginx")
    dockerfile = (REPO / "nginx" / "Dockerfile").read_text()
    (exposed,) = re.findall(r"^EXPOSE (\d+)$", dockerfile, flags=re.MULTILINE)
    ports = {p["name"]: p["containerPort"] for p in nginx["ports"]}
    assert ports["http"] == int(exposed)
    assert re.search(rf"^\s*listen {exposed};", NGINX_CONF, flags=re.MULTILINE)
    (status,) = [
        re.search(r"listen (\d+);", server)[1]
        for server in NGINX_CONF.split("server {")
        if "location = /stub_status" in server
    ]
    assert ports["status"] == int(status)
    # The probes run the image's HEALTHCHECK command (the health server is on loopback).
    (healthcheck,) = re.findall(r"^\s+CMD (\[.*\])$", dockerfile, flags=re.MULTILINE)
    for kind in ("startup", "readiness", "liveness"):
        assert nginx[f"{kind}Probe"]["exec"]["command"] == json.loads(healthcheck), kind
    (health_port,) = re.findall(r"listen 127\.0\.0\.1:(\d+);", NGINX_CONF)
    assert f"http://127.0.0.1:{health_port}/nginx-health" in healthcheck
    assert "location = /nginx-health" in NGINX_CONF
    deployment = find(objs, "Deployment", "nginx")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace - pause(deployment) == seconds(COMPOSE["services"]["nginx"]["stop_grace_period"])
    service = find(objs, "Service", "nginx")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}


def test_production_keeps_the_clients_address_and_pulls_its_images(objects):
    objs = objects["production"]
    service = find(objs, "Service", "nginx")
    assert service["spec"]["type"] == "LoadBalancer" and service["spec"]["externalTrafficPolicy"] == "Local"
    for name in ("app", "nginx"):
        assert container(objs, name)["imagePullPolicy"] == "Always"
        assert container(objs, name)["image"].startswith("registry.example.com/flask-concurrency/")


def test_ingress_overlay_replaces_nginx_by_an_ingress(objects):
    objs = objects["ingress"]
    assert not [o for o in objs if o["metadata"]["name"] == "nginx"]
    (ingress,) = [o for o in objs if o["kind"] == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "app", "port": {"name": "http"}}
    assert find(objs, "Service", "app")["spec"]["ports"][0]["name"] == "http"
    read_timeout = env(container(objs, "app"))["NGINX_PROXY_READ_TIMEOUT"]["value"]
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) == seconds(read_timeout)


# --- checkov --------------------------------------------------------------------


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov in its venv for this requirements/policy.txt and this Python, made on first use."""
    wanted = hashlib.sha256(POLICY_LOCK.read_bytes() + sys.version.encode()).hexdigest()
    venv = CHECKOV_VENVS / f"checkov-{wanted[:16]}"
    marker = venv / ".installed"
    CHECKOV_VENVS.mkdir(parents=True, exist_ok=True)
    with open(CHECKOV_VENVS / "checkov-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest run may be making it
        if not marker.is_file():
            print(f"\n==> creating {venv} from requirements/policy.txt", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            result = subprocess.run(
                [
                    *(str(venv / "bin" / "python"), "-m", "pip", "install", "-q"),
                    *("--disable-pip-version-check", "--require-hashes", "--only-binary=:all:"),
                    *("-r", str(POLICY_LOCK)),
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert result.returncode == 0, f"installing requirements/policy.txt failed:\n{result.stderr[-3000:]}"
            marker.write_text(wanted)
    return venv / "bin" / "checkov"


def run_checkov(checkov: Path, directory: Path, *options: str) -> dict:
    result = subprocess.run(
        [str(checkov), "-d", str(directory), "-o", "json", *options], capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip(), f"checkov printed nothing: {result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    (report,) = report if isinstance(report, list) else [report]
    assert report["check_type"] == "kubernetes"
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    return report


def skip_list() -> dict[str, tuple[list[str], str]]:
    """checkov.yaml's skip-check: check id -> (where it may fail, the reason)."""
    text = CHECKOV_CONFIG.read_text()
    block = text.split("skip-check:\n", 1)[1]
    skips = {}
    for comment, check in re.findall(r"((?:  # .*\n)+)  - (CKV\w+)", block):
        lines = [line.strip()[2:] for line in comment.splitlines()]
        scope, _, first = lines[0].partition(": ")
        skips[check] = ([s.strip() for s in scope.split(",")], " ".join([first, *lines[1:]]).strip())
    assert set(skips) == set(yaml.safe_load(text)["skip-check"]), "every skip needs its comment"
    return skips


def test_every_checkov_skip_says_where_and_why():
    for check, (scopes, reason) in skip_list().items():
        assert scopes and all(re.fullmatch(r"(\*|\w+)/\w+/[\w-]+", s) for s in scopes), (check, scopes)
        assert len(reason) > 40, (check, reason)


@pytest.fixture(scope="session")
def checkov_reports(checkov, rendered) -> tuple[dict, dict]:
    directory = next(iter(rendered.values())).parent
    with_skips = run_checkov(checkov, directory, "--config-file", str(CHECKOV_CONFIG))
    without = run_checkov(checkov, directory, "--framework", "kubernetes", "--skip-download", "--quiet", "--compact")
    return with_skips, without


def test_checkov_finds_nothing_with_the_projects_skips(checkov_reports):
    with_skips, _ = checkov_reports
    failed = [(f["check_id"], f["file_path"], f["resource"]) for f in with_skips["results"].get("failed_checks", [])]
    assert not failed
    assert with_skips["summary"]["passed"] > 100


def test_checkov_fails_only_where_a_skip_says_and_every_skip_is_needed(checkov_reports):
    _, without = checkov_reports
    skips = skip_list()
    used = set()
    for failure in without["results"].get("failed_checks", []):
        check = failure["check_id"]
        # resource: "Kind.namespace.name"; file: "/<overlay>.yaml".
        kind, _, name = failure["resource"].split(".", 2)
        where = f"{Path(failure['file_path']).stem}/{kind}/{name}"
        assert check in skips, f"{check} ({failure['check_name']}) fails on {where}: fix it or explain it"
        assert any(fnmatch.fnmatch(where, scope) for scope in skips[check][0]), (check, where, skips[check][0])
        used.add(check)
    assert used == set(skips), f"skips no object needs any more: {sorted(set(skips) - used)}"
