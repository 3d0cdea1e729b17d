"""The app's static files, published where nginx serves them.

    python -m serving.static digest
    python -m serving.static publish [DIRECTORY]
    python -m serving.static prune [DIRECTORY] [--keep N]

DIRECTORY is STATIC_PUBLISH_DIR's by default (serving/settings.py).

nginx serves /static/ from a volume it shares with the app (docker-compose.yml's
`static` volume; never through gunicorn). Each app replica publishes its
release's files there when it starts, before gunicorn serves
(serving/serve.py runs `publish` when STATIC_PUBLISH_DIR is set): the
content-hashed copies the image build made (`digest`, flask-static-digest),
their .gz, and the plain names. Publishing adds and never removes, so during
a rolling deploy the old release's hashed files stay beside the new ones and
pages from either release find their assets; a deploy ships the app and its
assets together without touching nginx, whose image cannot change while it
runs. Each release's manifest is kept under `.manifests/`, and `prune` removes
the hashed files no recent release names (`make static-prune`).

It reaches the static folder through the app's WSGI entry point
(`app.static_folder`, Flask's own attribute), in a process of its own: the
master must not import the app before gevent patches the workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

MANIFEST = "cache_manifest.json"
MANIFESTS = ".manifests"
#: flask-static-digest's names: NAME-<32 hex>.EXT
HASHED = re.compile(r"-[0-9a-f]{32}(\.|$)")


def static_folder() -> Path | None:
    """The served app's static folder (Flask's `app.static_folder`, wherever
    the app keeps it), or None for an app that has none."""
    from serving.wsgi import app  # the app APP_MODULE names, as it was loaded

    folder = getattr(app, "static_folder", None)
    return Path(folder) if folder and Path(folder).is_dir() else None


def digest(root: Path) -> list[Path]:
    """At image build: the content-hashed copies, their .gz and the manifest
    in every package's static/ under `root`, where the app uses
    flask-static-digest; nothing otherwise. flask-static-digest's digester
    is called directly, not through `flask digest compile`, which would make
    the app: an app that cannot load must reach the deploy's own check,
    which names the error, not fail the build."""
    try:
        from flask_static_digest.digester import compile as compile_digests
    except ImportError:
        return []
    folders = sorted(path for path in root.glob("*/static") if path.is_dir() and path.parent.name != "serving")
    for folder in folders:
        compile_digests(f"{folder}/", f"{folder}/", [], True, False)
    return folders


def _copy(source: Path, target: Path) -> bool:
    """Copy unless the same bytes are there; atomically, so that nginx never
    serves half a file. True when something was written."""
    if target.exists() and target.read_bytes() == source.read_bytes():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(source, staging)
    staging.chmod(0o644)
    os.replace(staging, target)
    return True


def publish(source: Path, destination: Path) -> tuple[int, int]:
    """Every file of `source` into `destination`; (files, written)."""
    files = written = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name == MANIFEST:
            continue
        files += 1
        written += _copy(path, destination / path.relative_to(source))
    manifest = source / MANIFEST
    if manifest.exists():
        release = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
        target = destination / MANIFESTS / f"{release}.json"
        _copy(manifest, target)
        # Its time is the release's last start, which prune() ranks by: a
        # rolled-back release is the newest again, though its manifest was there.
        os.utime(target)
    return files, written


def prune(destination: Path, keep: int) -> int:
    """Remove the hashed files (and their .gz) no one of the `keep` most
    recently started releases' manifests names; returns how many went."""
    manifests = sorted((destination / MANIFESTS).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    wanted: set[str] = set()
    for manifest in manifests[:keep]:
        wanted |= set(json.loads(manifest.read_text()).values())
    for old in manifests[keep:]:
        old.unlink()
    removed = 0
    for path in destination.rglob("*"):
        if not path.is_file() or MANIFESTS in path.parts or not HASHED.search(path.name):
            continue
        name = path.relative_to(destination).as_posix().removesuffix(".gz")
        if name not in wanted:
            path.unlink()
            removed += 1
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("digest")
    publishing, pruning = commands.add_parser("publish"), commands.add_parser("prune")
    for command in (publishing, pruning):
        command.add_argument("directory", type=Path, nargs="?", help="default: STATIC_PUBLISH_DIR")
    pruning.add_argument("--keep", type=int, default=2, help="releases whose files stay (default 2)")
    args = parser.parse_args(argv)
    if args.command == "digest":
        folders = digest(Path.cwd())
        print(f"static files: digested {', '.join(map(str, folders)) or 'nothing'}", flush=True)
        return 0
    if args.directory is None:
        from serving.settings import read

        configured = read("STATIC_PUBLISH_DIR")
        if not configured:
            print("static files: no directory given and STATIC_PUBLISH_DIR is not set", file=sys.stderr)
            return 2
        args.directory = Path(configured)
    if not args.directory.is_dir():
        print(f"static files: {args.directory} is not a directory", file=sys.stderr)
        return 2
    if args.command == "publish":
        source = static_folder()
        if source is None:
            print("static files: the app has no static folder: nothing to publish", flush=True)
            return 0
        files, written = publish(source, args.directory)
        print(f"static files: {files} published to {args.directory}, {written} new or changed", flush=True)
    else:
        removed = prune(args.directory, args.keep)
        print(f"static files: {removed} no longer named by the {args.keep} newest releases removed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
