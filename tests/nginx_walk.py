"""nginx's configuration followed as nginx reads it, without Docker: from
nginx/nginx.conf through every `include`, depth first, each file once, each
path nginx names mapped to the repository file it comes from:

- /etc/nginx/X is nginx/X (nginx/Dockerfile copies them);
- /tmp/nginx/X is written at start (the official image's entrypoint): from
  the template nginx/templates/X.template, or else by the one hook in
  nginx/docker-entrypoint.d/ or nginx/rotation.sh that names it outside a
  comment.

The README's list between <!-- nginx-walk --> and <!-- /nginx-walk --> is
this walk for `GET /` over plain HTTP (tests/unit/test_nginx_walk.py), and a
running nginx's `nginx -T` loads these files (tests/integration/)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.stack import REPO

NGINX = REPO / "nginx"
ROOT = "/etc/nginx/nginx.conf"
#: The base image's own files: not the repository's.
BASE_IMAGE_FILES = frozenset({"/etc/nginx/mime.types"})
#: Where the templates are rendered and the hooks write (nginx/Dockerfile's NGINX_ENVSUBST_OUTPUT_DIR).
RENDERED = "/tmp/nginx/"
WRITERS = (*sorted((NGINX / "docker-entrypoint.d").iterdir()), NGINX / "rotation.sh")
INCLUDE = re.compile(r"^\s*include\s+([^;\s]+)\s*;", flags=re.MULTILINE)
COMMENT = re.compile(r"(^|\s)#.*$", flags=re.MULTILINE)


def uncommented(script: Path) -> str:
    return "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))


def source_of(path: str) -> Path:
    """The repository file a path nginx reads comes from."""
    if path.startswith("/etc/nginx/"):
        return NGINX / path.removeprefix("/etc/nginx/")
    if path.startswith(RENDERED):
        template = NGINX / "templates" / f"{path.removeprefix(RENDERED)}.template"
        if template.is_file():
            return template
        writers = [writer for writer in WRITERS if path in uncommented(writer)]
        assert len(writers) == 1, f"{path}: rendered from no template, and written by {writers or 'nothing'}"
        return writers[0]
    raise AssertionError(f"{path}: neither the image's /etc/nginx nor the rendered {RENDERED}")


def includes(path: str, mode: str) -> list[str]:
    """The paths a configuration file includes, in order, globs expanded."""
    text = COMMENT.sub("", source_of(path).read_text())
    found = []
    for target in INCLUDE.findall(text):
        target = target.replace("${NGINX_SITE_MODE}", mode)
        assert "$" not in target, f"{path}: include {target}: a variable the walk cannot follow"
        if not target.startswith("/"):
            target = f"/etc/nginx/{target}"
        if "*" in target:
            directory, pattern = target.rsplit("/", 1)
            matches = sorted(source_of(directory + "/").glob(pattern))
            assert matches, f"{path}: include {target} matches nothing"
            found += [f"{directory}/{match.name}" for match in matches]
        else:
            found.append(target)
    return found


def walk(mode: str = "http") -> list[tuple[str, str]]:
    """(the path nginx reads, the repository file it comes from), in the order
    nginx reads them, for the site's mode: `http`, or `https` with a
    certificate mounted. The base image's files are left out."""
    seen: list[str] = []

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.append(path)
        if path in BASE_IMAGE_FILES:
            return
        source = source_of(path)
        if source.is_relative_to(NGINX / "docker-entrypoint.d") or source == NGINX / "rotation.sh":
            return  # written by a script: directives only, no includes
        for target in includes(path, mode):
            visit(target)

    visit(ROOT)
    return [(path, source_of(path).relative_to(REPO).as_posix()) for path in seen if path not in BASE_IMAGE_FILES]


def readme_walk() -> list[str]:
    """The files the README lists between <!-- nginx-walk --> and <!-- /nginx-walk -->, in order."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- nginx-walk -->")[1].split("<!-- /nginx-walk -->")[0]
    return re.findall(r"^\d+\. `([^`]+)`", section, flags=re.MULTILINE)


def loaded_files(nginx_t: str) -> list[str]:
    """The files `nginx -T` says it loaded, in its order."""
    return re.findall(r"^# configuration file (.+):$", nginx_t, flags=re.MULTILINE)
