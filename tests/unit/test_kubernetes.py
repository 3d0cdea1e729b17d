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

import jsonschema
import kubernetes_validate.utils
import pytest
import yaml

from demo import config
from harness.stack import REPO
from serving.health import LIVENESS_PATH, READINESS_PATH
from serving.settings import BUDGET, VARIABLES, load

pytestmark = pytest.mark.unit

KUBERNETES = REPO / "deploy" / "kubernetes"
KUBERNETES_SCHEMAS = KUBERNETES / "schemas"
OVERLAYS = ("development", "production", "ingress", "keda")
#: The overlay that scales on saturation (KEDA) instead of CPU.
SATURATION_OVERLAY = "keda"
#: The overlays with the project's nginx in front (all but ingress).
NGINX_OVERLAYS = ("development", "production", "keda")
#: Custom resources kubernetes-validate has no schema for, and the project's
#: own schema each is validated against instead.
CUSTOM_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): KUBERNETES_SCHEMAS / "keda-scaledobject-v1alpha1.json"}
BUDGET_COMMAND = REPO / "scripts" / "kubernetes-budget.py"
#: The limit docs/database.md ships the overlays for: PostgreSQL's default.
DOCUMENTED_MAX_CONNECTIONS = 100
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
    """The Deployment's main container: the one named as it."""
    return container_of(objs, name, name)


def container_of(objs: list[dict], deployment_name: str, name: str) -> dict:
    """A container of the Deployment, init containers included."""
    deployment = find(objs, "Deployment", deployment_name)
    assert deployment, f"no Deployment {deployment_name}"
    (found,) = [c for c in all_containers(deployment["spec"]["template"]) if c["name"] == name]
    return found


def env(main: dict) -> dict[str, dict]:
    return {item["name"]: item for item in main.get("env", [])}


def pause(deployment: dict) -> int:
    """The preStop pause of the Deployment's main container (the one named as it)."""
    (main,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == deployment["metadata"]["name"]
    ]
    command = main["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def with_nginx(objects) -> list[str]:
    return [overlay for overlay, objs in objects.items() if find(objs, "Deployment", "nginx")]


def autoscaler(objs: list[dict]) -> dict:
    """What sizes Deployment/app: the HorizontalPodAutoscaler, or KEDA's ScaledObject; never both."""
    (scaler,) = [o for o in objs if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    return scaler


def pod_templates(objs: list[dict]) -> list[dict]:
    """Every pod the overlay makes: its Deployments' and its Jobs'."""
    return [o["spec"]["template"] for o in objs if o["kind"] in ("Deployment", "Job")]


def all_containers(template: dict) -> list[dict]:
    return [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders(objects, overlay):
    kinds = {o["kind"] for o in objects[overlay]}
    assert {"Namespace", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "Job"} <= kinds
    autoscaler(objects[overlay])


def schema_versions() -> list[str]:
    """The two newest Kubernetes minor versions kubernetes-validate ships."""
    minors = {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}
    newest = sorted(minors, key=lambda minor: tuple(int(part) for part in minor.split(".")))[-2:]
    return [f"{minor}.0" for minor in newest]


@pytest.mark.parametrize("version", schema_versions())
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_the_api(objects, overlay, version):
    for obj in objects[overlay]:
        custom = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if custom:  # a custom resource: the project's schema of it, strict too
            jsonschema.validate(obj, json.loads(custom.read_text()))
            continue
        # strict: a field the API does not have (a typo) is an error too.
        kubernetes_validate.utils.validate(obj, version, strict=True)


def test_the_custom_resource_schema_refuses_a_misspelt_field(objects):
    (scaled,) = [o for o in objects[SATURATION_OVERLAY] if o["kind"] == "ScaledObject"]
    schema = json.loads(CUSTOM_SCHEMAS[(scaled["apiVersion"], "ScaledObject")].read_text())
    misspelt = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 10}}
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(misspelt, schema)


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
    scaler = autoscaler(objs)
    assert scaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}
    if overlay == SATURATION_OVERLAY:
        assert scaler["spec"]["minReplicaCount"] >= 2
    else:  # the default where KEDA is not installed: CPU
        assert scaler["apiVersion"] == "autoscaling/v2"
        assert [m["resource"]["name"] for m in scaler["spec"]["metrics"]] == ["cpu"]
        assert scaler["spec"]["minReplicas"] >= (1 if overlay == "development" else 2)
    resources = container(objs, "app")["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


def image_uid(image: str) -> int | None:
    """The uid one of the project's images runs as (its Dockerfile's USER); None for another's."""
    repository, _, name = image.partition("@")[0].rpartition(":")[0].rpartition("/")
    if not repository.endswith("flask-concurrency"):
        return None
    return dockerfile_uid(REPO / "Dockerfile" if name == "app" else REPO / name / "Dockerfile")


def hardened(template: dict, owner: str) -> None:
    """The pod and each of its containers, init containers and sidecars
    included, as Compose runs its containers."""
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False, owner
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, owner
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, owner
    for main in all_containers(template):
        where = f"{owner}: container {main['name']}"
        context = main["securityContext"]
        # The image's own user where the image is the project's; the pod's otherwise.
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] == (image_uid(main["image"]) or pod["runAsUser"]), where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        (tmp,) = [v for v in spec["volumes"] if v["name"] == mounts["/tmp"]]
        assert tmp["emptyDir"]["medium"] == "Memory", where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened_as_in_compose_with_the_images_users(objects, overlay):
    objs = objects[overlay]
    owners = [o for o in objs if o["kind"] in ("Deployment", "Job")]
    assert {o["metadata"]["name"] for o in owners} >= {"app"}
    for owner in owners:
        hardened(owner["spec"]["template"], f"{owner['kind']}/{owner['metadata']['name']}")
    # The pods' own users are the images' too.
    assert find(objs, "Deployment", "app")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == (
        dockerfile_uid(REPO / "Dockerfile")
    )
    if find(objs, "Deployment", "nginx"):
        nginx = find(objs, "Deployment", "nginx")["spec"]["template"]["spec"]
        assert nginx["securityContext"]["runAsUser"] == dockerfile_uid(REPO / "nginx" / "Dockerfile")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_policies_select_existing_pods(objects, overlay):
    objs = objects[overlay]
    pods = [template["metadata"]["labels"] for template in pod_templates(objs)]

    def selects(selector: dict) -> bool:
        return any(selector.items() <= labels.items() for labels in pods)

    for obj in objs:
        if obj["kind"] == "Service":
            assert selects(obj["spec"]["selector"]), obj["metadata"]["name"]
        elif obj["kind"] == "PodDisruptionBudget":
            assert selects(obj["spec"]["selector"]["matchLabels"]), obj["metadata"]["name"]
        elif obj["kind"] == "NetworkPolicy" and obj["spec"]["podSelector"]:
            assert selects(obj["spec"]["podSelector"]["matchLabels"]), obj["metadata"]["name"]
    images = [c["image"] for template in pod_templates(objs) for c in all_containers(template)]
    # The overlay names every image with a tag or a digest.
    assert all(re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image.rpartition("/")[2]) for image in images), images


#: The API server's ports, for wait-for-migrations: the `kubernetes` Service's and the usual one behind it.
API_SERVER_PORTS = [443, 6443]


def static_port(objs: list[dict]) -> int:
    (port,) = [p["containerPort"] for p in container_of(objs, "app", "static")["ports"] if p["name"] == "static"]
    return port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_nginx_reaches_gunicorn_and_the_static_files_and_only_monitoring_the_metrics(objects, overlay):
    objs = objects[overlay]
    deny = find(objs, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policy = find(objs, "NetworkPolicy", "app")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Out: the cluster's DNS, PostgreSQL's port and the API server's, nothing else.
    egress = policy["spec"]["egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in egress] == [[53, 53], [5432], API_SERVER_PORTS]
    assert egress[0]["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    # The migrations' Job: DNS and the database only, and nothing in.
    migrations = find(objs, "NetworkPolicy", "migrations")
    assert (
        migrations["spec"]["podSelector"]["matchLabels"]
        == find(objs, "Job", job_name(objs))["spec"]["template"]["metadata"]["labels"]
    )
    assert "ingress" not in migrations["spec"] and migrations["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in migrations["spec"]["egress"]] == [[53, 53], [5432]]
    names = {"http": bind_port(), "metrics": default("METRICS_PORT"), "static": static_port(objs)}
    ports = []
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from") and rule.get("ports"), rule
        (port,) = [names.get(p["port"], p["port"]) for p in rule["ports"]]
        (peer,) = rule["from"]
        ports.append(port)
        if port in (bind_port(), static_port(objs)):
            if find(objs, "Deployment", "nginx"):
                assert peer == {"podSelector": {"matchLabels": pod_labels(objs, "nginx")}}
            else:
                assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
        else:
            assert port == default("METRICS_PORT")
            assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    # One rule each: gunicorn's port, the static files' and the metrics'.
    assert sorted(ports) == sorted([bind_port(), static_port(objs), default("METRICS_PORT")]), policy["spec"]["ingress"]


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
    assert with_nginx(objects) == list(NGINX_OVERLAYS)


@pytest.mark.parametrize("overlay", NGINX_OVERLAYS)
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


@pytest.mark.parametrize("overlay", NGINX_OVERLAYS)
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


@pytest.mark.parametrize("overlay", NGINX_OVERLAYS)
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
    ingress = find(objs, "Ingress", "app")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "app", "port": {"name": "http"}}
    assert find(objs, "Service", "app")["spec"]["ports"][0]["name"] == "http"
    read_timeout = env(container(objs, "app"))["NGINX_PROXY_READ_TIMEOUT"]["value"]
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) == seconds(read_timeout)


# --- migrations -------------------------------------------------------------------


def image_tag(image: str) -> str:
    return image.rpartition("/")[2].partition(":")[2]


def job_name(objs: list[dict]) -> str:
    (job,) = [o["metadata"]["name"] for o in objs if o["kind"] == "Job"]
    return job


def compose_migration_command() -> list[str]:
    """What `make up` and `make deploy` run in a one-off app container."""
    script = (REPO / "scripts" / "prepare-database.sh").read_text()
    (run,) = re.findall(r"^compose run (?:.*\\\n)*.*", script, flags=re.MULTILINE)
    (command,) = re.findall(r"\b(python3 -m serving\.migrate)\b", run)
    return command.split()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_composes_command_from_the_deployments_image_named_per_release(objects, overlay):
    objs = objects[overlay]
    app = container(objs, "app")
    job = find(objs, "Job", job_name(objs))
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["image"] == app["image"]
    assert migrate["command"] == compose_migration_command()
    # The database as the app reaches it: the same variables, the same Secret.
    assert {k: v for k, v in env(migrate).items()} == {
        name: item
        for name, item in env(app).items()
        if name in {"DATABASE_URL", "DATABASE_PASSWORD_FILE", "SECRET_KEY_FILE"}
    }
    assert job["metadata"]["name"] == f"migrate-{image_tag(app['image'])}"
    # A Job's name is a DNS label (its pods' job-name label): a tag with capitals or "_" cannot name one.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", job["metadata"]["name"])
    spec = job["spec"]
    assert 0 <= spec["backoffLimit"] <= 3
    # No TTL: the release's pods wait for this Job whenever they start (a
    # scale-up days later too); a Job deleted by a TTL would keep them from starting.
    assert "ttlSecondsAfterFinished" not in spec
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_apps_pods_wait_for_their_releases_job_and_only_that_container_holds_a_token(objects, overlay):
    objs = objects[overlay]
    template = find(objs, "Deployment", "app")["spec"]["template"]
    (wait,) = template["spec"]["initContainers"]
    assert wait["command"][:3] == ["kubectl", "wait", "--for=condition=Complete"]
    assert wait["command"][3] == f"job/{job_name(objs)}"
    # The token is projected into the waiting container alone; nothing mounts it automatically.
    token_volumes = {v["name"] for v in template["spec"]["volumes"] if "projected" in v}
    holders = [c["name"] for c in all_containers(template) if token_volumes & {m["name"] for m in c["volumeMounts"]}]
    assert holders == [wait["name"]]
    account = template["spec"]["serviceAccountName"]
    assert find(objs, "ServiceAccount", account)["automountServiceAccountToken"] is False
    # What the account may do: read Jobs, nothing more.
    (binding,) = [
        o
        for o in objs
        if o["kind"] == "RoleBinding"
        and any(s["kind"] == "ServiceAccount" and s["name"] == account for s in o["subjects"])
    ]
    role = find(objs, "Role", binding["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}]


def build(kustomize: str, directory: Path) -> list[dict]:
    result = subprocess.run([kustomize, "build", str(directory)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def test_a_new_release_is_a_new_job_that_its_pods_wait_for(kustomize, tmp_path):
    """What `kustomize edit set image` does for a release: the Job's name, and what the pods wait for, follow."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                # Relative: kustomize takes no absolute path to a directory.
                "resources": [os.path.relpath(KUBERNETES / "base", tmp_path)],
                "images": [{"name": "flask-concurrency/app", "newTag": "2.0.1-rc.1"}],
                "transformers": [os.path.relpath(KUBERNETES / "overlay-names", tmp_path)],
            }
        )
    )
    objs = build(kustomize, tmp_path)
    assert job_name(objs) == "migrate-2.0.1-rc.1"
    assert container_of(objs, "app", "wait-for-migrations")["command"][3] == "job/migrate-2.0.1-rc.1"


# --- static files -------------------------------------------------------------------


def static_server_conf(objs: list[dict]) -> str:
    (config,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("static-server-")]
    return config["data"]["nginx.conf"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_app_pod_serves_its_own_releases_static_files(objects, overlay):
    objs = objects[overlay]
    template = find(objs, "Deployment", "app")["spec"]["template"]
    app, static = container(objs, "app"), container_of(objs, "app", "static")
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    # The app (the release's image) publishes its files at start into a
    # volume of its pod's own (serving/serve.py, as on Compose)...
    published = env(app)["STATIC_PUBLISH_DIR"]["value"]
    (volume,) = [m["name"] for m in app["volumeMounts"] if m["mountPath"] == published]
    assert set(volumes[volume]) == {"name", "emptyDir"}
    # ... which nginx, beside it, serves read-only from where the site's configuration roots /static/.
    (served,) = [m for m in static["volumeMounts"] if m["name"] == volume]
    assert served["readOnly"] is True
    (root,) = re.findall(
        r"location \^~ /static/ \{\s+root (\S+);", (REPO / "nginx" / "templates" / "site.conf.template").read_text()
    )
    assert served["mountPath"] == f"{root}/static"
    conf = static_server_conf(objs)
    assert re.search(rf"location \^~ /static/ \{{\s+root {root};", conf)
    assert re.search(rf"listen {static_port(objs)};", conf)
    assert static["command"][:3] == ["nginx", "-c", "/etc/nginx/static-server/nginx.conf"]
    # nginx's image: in the nginx overlays the same one the front nginx runs.
    if find(objs, "Deployment", "nginx"):
        assert static["image"] == container(objs, "nginx")["image"]
    assert static["readinessProbe"]["httpGet"]["path"] in conf


@pytest.mark.parametrize("overlay", NGINX_OVERLAYS)
def test_nginx_asks_the_app_pods_for_static_files_and_the_next_pod_for_a_missing_one(objects, overlay):
    objs = objects[overlay]
    nginx = container(objs, "nginx")
    (namespace,) = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    mounts = {m["mountPath"]: m for m in nginx["volumeMounts"]}
    (source,) = [
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("nginx-static-source-")
    ]
    # What the site's static locations include, both of them: the app pods instead of a disk.
    site = (REPO / "nginx" / "templates" / "site.conf.template").read_text()
    assert site.count("include /etc/nginx/snippets/static-source.conf;") == 2
    snippet = source["data"][mounts["/etc/nginx/snippets/static-source.conf"]["subPath"]]
    assert "proxy_pass http://app_static;" in snippet
    assert re.search(r"proxy_next_upstream error timeout http_404;", snippet)
    assert "proxy_intercept_errors on;" in snippet  # the last 404 is nginx's JSON one
    # conf.d/*.conf is included at the http level (nginx/nginx.conf): the upstream, the app pods' static port.
    assert "include /etc/nginx/conf.d/*.conf;" in (REPO / "nginx" / "nginx.conf").read_text()
    upstream = source["data"][mounts["/etc/nginx/conf.d/app-static.conf"]["subPath"]]
    (host, port) = re.findall(r"server (\S+):(\d+) resolve", upstream)[0]
    assert host == f"app-headless.{namespace}.svc.cluster.local"
    assert int(port) == static_port(objs)
    assert {p["name"]: p["port"] for p in find(objs, "Service", "app-headless")["spec"]["ports"]}["static"] == int(port)


def test_the_ingress_asks_the_app_pods_for_static_files_and_the_next_pod_for_a_missing_one(objects):
    objs = objects["ingress"]
    static = find(objs, "Ingress", "static")
    ((path,),) = [rule["http"]["paths"] for rule in static["spec"]["rules"]]
    assert path["path"] == "/static/"
    assert path["backend"]["service"] == {"name": "app", "port": {"name": "static"}}
    assert "static" in {p["name"] for p in find(objs, "Service", "app")["spec"]["ports"]}
    assert "http_404" in static["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-next-upstream"].split()
    assert not [o for o in objs if o["metadata"]["name"].startswith("nginx-static-source")]


# --- the connection budget -------------------------------------------------------


def run_budget(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUDGET_COMMAND), *args], capture_output=True, text=True, cwd=REPO)


def shipped_overlays() -> list[str]:
    found = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
    assert found == sorted(OVERLAYS), "an overlay the tests do not render"
    return found


def test_the_budget_command_accepts_every_shipped_overlay_at_the_documented_limit(kustomize):
    result = run_budget("--max-connections", str(DOCUMENTED_MAX_CONNECTIONS), *shipped_overlays())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.partition(":")[0] for line in lines] == shipped_overlays()
    # docs/database.md shows exactly what the command prints.
    docs = (REPO / "docs" / "database.md").read_text()
    for line in lines:
        assert line in docs, f"docs/database.md does not show: {line}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_budget_command_sums_the_rendered_figures(objects, overlay, kustomize):
    """(most replicas + maxSurge) x workers x pool + reserve, each read here from the rendered objects."""
    objs = objects[overlay]
    scaler = autoscaler(objs)
    most = scaler["spec"].get("maxReplicas") or scaler["spec"]["maxReplicaCount"]
    surge = find(objs, "Deployment", "app")["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    app = container(objs, "app")
    variables = {name: item["value"] for name, item in env(app).items() if "value" in item}
    settings = load(variables, cpus=math.ceil(cpu(app["resources"]["limits"]["cpu"])))
    needed = (most + surge) * settings.workers * settings.database_pool_size + settings.database_reserved_connections
    result = run_budget(overlay)
    assert result.returncode == 0, result.stderr
    assert f" = {needed} connections;" in result.stdout
    assert f"maxReplicas {most} + maxSurge {surge}) x {settings.workers} workers" in result.stdout.replace("Count", "s")


def test_the_budget_command_refuses_an_overlay_over_the_limit_in_one_line(kustomize):
    result = run_budget("--max-connections", "50", "production")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("kubernetes-budget: production: over the database's limit: ")
    assert "= 60 connections; max_connections 50 less 3 superuser-reserved and 0 reserved allows 47" in line
    assert line in (REPO / "docs" / "database.md").read_text()


def test_the_budget_command_refuses_two_autoscalers_and_an_unknown_overlay(kustomize, tmp_path):
    both = tmp_path / "both"
    both.mkdir()
    (both / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [os.path.relpath(KUBERNETES / "overlays" / "keda", both), "hpa.yaml"]})
    )
    hpa = find(yaml.safe_load_all((KUBERNETES / "base" / "app.yaml").read_text()), "HorizontalPodAutoscaler", "app")
    (both / "hpa.yaml").write_text(yaml.safe_dump(hpa))
    result = run_budget(str(both))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "kubernetes-budget: both: both a HorizontalPodAutoscaler and a ScaledObject scale Deployment/app: "
        "KEDA makes its own"
    ]
    result = run_budget("staging")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("kubernetes-budget: staging: no kustomization.yaml in ")


# --- scaling on saturation -------------------------------------------------------


def recorded_rules() -> set[str]:
    rules = yaml.safe_load((REPO / "monitoring" / "prometheus" / "rules.yml").read_text())
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def test_the_scaledobject_reads_the_saturation_prometheus_records(objects):
    objs = objects[SATURATION_OVERLAY]
    scaler = autoscaler(objs)
    assert scaler["kind"] == "ScaledObject"
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    # Every series the query names is one the rule file records (a recorded
    # name has colons; a raw metric has none), and the one it scales on is the saturation.
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*:[a-zA-Z0-9_:]+", query))
    assert names == {"instance:gunicorn_saturation:ratio"}
    assert names <= recorded_rules()
    # A ratio averaged over the pods: the HPA KEDA makes compares it as a Value, below 1 (a full worker set).
    assert trigger["metricType"] == "Value"
    assert 0 < float(trigger["metadata"]["threshold"]) < 1


def test_scaling_on_saturation_replaces_the_cpu_autoscaler_and_keeps_its_bounds(objects):
    keda, production = objects[SATURATION_OVERLAY], objects["production"]
    assert not [o for o in keda if o["kind"] == "HorizontalPodAutoscaler"]
    scaler, cpu_scaler = autoscaler(keda), autoscaler(production)
    assert scaler["spec"]["minReplicaCount"] == cpu_scaler["spec"]["minReplicas"]
    assert scaler["spec"]["maxReplicaCount"] == cpu_scaler["spec"]["maxReplicas"]
    assert scaler["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == cpu_scaler["spec"]["behavior"]
    # Everywhere else the CPU autoscaler stays, and no ScaledObject.
    for overlay in set(OVERLAYS) - {SATURATION_OVERLAY}:
        assert autoscaler(objects[overlay])["kind"] == "HorizontalPodAutoscaler", overlay


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
        # OVERLAY/Kind/name; a name may end in * (the Job's follows the release).
        assert scopes and all(re.fullmatch(r"(\*|\w+)/\w+/[\w-]+\*?", s) for s in scopes), (check, scopes)
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
