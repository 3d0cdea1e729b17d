"""serving/settings.py's VARIABLES (the server's) and demo/config.py's (the
app's) are the one place a variable, its default and its bounds are written.
What documents or passes them must agree with them: the README's table,
.env.example and the app's pass-through list in docker-compose.yml; and the
base images are named once, in the Dockerfiles."""

from __future__ import annotations

import re

import pytest

from demo import config
from harness.stack import REPO
from serving.settings import VARIABLES

pytestmark = pytest.mark.unit

README = (REPO / "README.md").read_text()
ENV_EXAMPLE = (REPO / ".env.example").read_text()
COMPOSE = (REPO / "docker-compose.yml").read_text()


def readme_table() -> dict[str, tuple[str, str]]:
    """The configuration table: NAME -> (default, meaning)."""
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| (.*?) \| (.*?) \|$", README, flags=re.MULTILINE)
    return {name: (default, meaning) for name, default, meaning in rows}


def readme_table_rows() -> list[tuple[set[str], tuple[str, str]]]:
    """Every row, including those naming several variables (`A` / `B`):
    ({names}, (default, meaning))."""
    rows = re.findall(r"^\| (`[A-Z][A-Z0-9_]*`(?: / `[A-Z][A-Z0-9_]*`)*) \| (.*?) \| (.*?) \|$", README, re.MULTILINE)
    return [(set(re.findall(r"[A-Z][A-Z0-9_]*", names)), (default, meaning)) for names, default, meaning in rows]


def env_example() -> dict[str, str]:
    """.env.example: NAME -> the comment block above its `#NAME=` line."""
    entries, comment = {}, []
    for line in ENV_EXAMPLE.splitlines():
        if match := re.fullmatch(r"#([A-Z][A-Z0-9_]*)=\S*", line):
            entries[match[1]] = " ".join(comment)
        elif line.startswith("# "):
            comment.append(line[2:])
        else:
            comment = []
    return entries


def app_environment() -> str:
    block = re.search(r"^  app:\n(?:.*\n)*?    environment:\n((?:      .*\n)+)", COMPOSE, flags=re.MULTILINE)
    assert block, "docker-compose.yml: no environment block for the app"
    return block[1]


def app_pass_through() -> set[str]:
    """The names docker-compose.yml's app service passes through unset-or-value
    (`NAME:` with no value)."""
    return set(re.findall(r"^      ([A-Z][A-Z0-9_]*):\s*$", app_environment(), flags=re.MULTILINE))


#: The app settings docker-compose.yml sets itself: the secrets' files, which it mounts.
COMPOSE_SETS = {"SECRET_KEY_FILE": "/run/secrets/secret_key", "DATABASE_PASSWORD_FILE": "/run/secrets/db_password"}


def compose_default(name: str) -> str:
    (default,) = set(re.findall(rf"\$\{{{name}:-([^}}]*)\}}", COMPOSE))
    return default


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v.name)
def test_readme_table_says_what_settings_says(variable):
    table = readme_table()
    assert variable.name in table, f"README.md's table has no row for {variable.name}"
    assert table[variable.name] == (variable.documented, variable.meaning)


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v.name)
def test_env_example_documents_each_variable_and_its_default(variable):
    entries = env_example()
    assert variable.name in entries, f".env.example has no #{variable.name}= line"
    default = variable.documented.replace("`", "")
    assert f"Default {default}" in entries[variable.name], (variable.name, entries[variable.name])


def documented_default(setting: config.Setting) -> str:
    """How the README writes an app setting's default: `true`, `1000`, none."""
    if setting.default in ("", None):
        return "none"
    default = str(setting.default).lower() if isinstance(setting.default, bool) else str(setting.default)
    return f"`{default}`"


@pytest.mark.parametrize("setting", config.VARIABLES, ids=lambda s: s.name)
def test_readme_table_says_what_the_app_config_says(setting):
    table = readme_table()
    assert setting.name in table, f"README.md's table has no row for {setting.name}"
    assert table[setting.name] == (documented_default(setting), setting.meaning)


@pytest.mark.parametrize("setting", config.VARIABLES, ids=lambda s: s.name)
def test_env_example_documents_each_app_setting_and_its_default(setting):
    entries = env_example()
    assert setting.name in entries, f".env.example has no #{setting.name}= line"
    assert f"Default {documented_default(setting).strip('`')}." in entries[setting.name]


def test_compose_passes_exactly_the_server_and_app_variables():
    server = {variable.name for variable in VARIABLES if variable.compose}
    app = {setting.name for setting in config.VARIABLES}
    assert app_pass_through() == server | (app - set(COMPOSE_SETS))
    for name, value in COMPOSE_SETS.items():
        assert re.search(rf"^      {name}: {re.escape(value)}$", app_environment(), flags=re.MULTILINE), name
        secret = value.rpartition("/")[2]
        assert re.search(rf"^  {secret}:\n    file: ./secrets/{secret}$", COMPOSE, flags=re.MULTILINE), secret


def test_server_and_app_settings_are_apart():
    assert not {v.name for v in VARIABLES} & {s.name for s in config.VARIABLES}


def test_every_documented_variable_is_read_somewhere():
    """No row in the README and no line in .env.example for a variable nobody reads."""
    readers = {variable.name for variable in VARIABLES} | {setting.name for setting in config.VARIABLES}
    files = [REPO / "Makefile", *REPO.glob("compose.*.yml"), *REPO.glob("*/compose.yml")]
    sources = [COMPOSE, *(p.read_text() for p in files)]
    others = (set(readme_table()) | set(env_example())) - readers
    # The Compose-level ones at least (HTTP_PORT, APP_REPLICAS): the loop checks something.
    assert {"HTTP_PORT", "APP_REPLICAS"} <= others, sorted(others)
    for name in sorted(others):
        assert any(re.search(rf"\b{name}\b", text) for text in sources) or _is_build_arg(name), name


@pytest.mark.parametrize(("name", "default"), [("HTTP_PORT", "`8080`"), ("APP_REPLICAS", "`2`"), ("APP_CPUS", "none")])
def test_compose_level_defaults_match_the_readme(name, default):
    assert readme_table()[name][0] == default
    # APP_CPUS: the README's "none" is Compose's cpus 0, no limit.
    assert compose_default(name) == ("0" if default == "none" else default.strip("`"))


def _is_build_arg(name: str) -> bool:
    return any(f"ARG {name}" in path.read_text() for path in dockerfiles())


def dockerfiles():
    return [p for p in REPO.rglob("Dockerfile") if ".venv" not in p.parts and ".cache" not in p.parts]


@pytest.mark.parametrize(
    "arg", ["PYTHON_BASE_IMAGE", "NGINX_BASE_IMAGE", "PROMETHEUS_BASE_IMAGE", "NGINX_EXPORTER_BASE_IMAGE"]
)
def test_base_images_are_named_once_and_the_docs_agree(arg):
    defaults = {
        path.relative_to(REPO).as_posix(): match[1]
        for path in dockerfiles()
        if (match := re.search(rf"^ARG {arg}=(\S+)$", path.read_text(), flags=re.MULTILINE))
    }
    assert len(set(defaults.values())) == 1, defaults  # every Dockerfile builds from the same base
    (official,) = set(defaults.values())
    row = next(cells for names, cells in readme_table_rows() if arg in names)
    assert f"`{official}`" in row[0]
    for path in [REPO / "docker-compose.yml", *REPO.glob("*/compose.yml")]:
        assert official not in path.read_text(), f"{path.name} names {official}: the Dockerfile's default is the one"


def test_nginx_trusts_no_proxy_in_front_by_default():
    # nginx alone reads them (the app trusts nginx); the README says the same defaults.
    assert compose_default("TRUSTED_PROXY_HOPS") == "1"
    assert compose_default("TRUSTED_PROXY_ADDRESSES") == ""
    assert readme_table()["TRUSTED_PROXY_HOPS"][0] == "`1`"
    assert readme_table()["TRUSTED_PROXY_ADDRESSES"][0] == "none"


def test_prometheus_scrapes_the_port_the_app_serves_metrics_on():
    (metrics_port,) = [v for v in VARIABLES if v.name == "METRICS_PORT"]
    prometheus = (REPO / "monitoring" / "prometheus" / "prometheus.yml").read_text()
    assert re.search(rf"names: \[app\]\s+type: A\s+port: {metrics_port.default}\b", prometheus)


@pytest.mark.parametrize(("name", "default"), [("PROMETHEUS_PORT", "9090"), ("PROMETHEUS_RETENTION", "15d")])
def test_monitoring_defaults_match_the_readme(name, default):
    monitoring = (REPO / "monitoring" / "compose.yml").read_text()
    assert f"${{{name}:-{default}}}" in monitoring
    row = next(cells for names, cells in readme_table_rows() if name in names)
    assert f"`{default}`" in row[0]
