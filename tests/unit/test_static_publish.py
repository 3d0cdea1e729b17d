"""serving/static.py: a release's static files published beside the earlier
releases', and the files no recent release names pruned."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from flask_static_digest.digester import compile as digest

from serving import static

pytestmark = pytest.mark.unit


def release(folder: Path, css: str) -> dict[str, str]:
    """A static folder as the image build leaves it: the file, its hashed
    copy, their .gz, the manifest. Returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        stale.unlink()
    (folder / "site.css").write_text(css)
    digest(f"{folder}/", f"{folder}/", [], True, False)
    return json.loads((folder / static.MANIFEST).read_text())


def test_a_release_is_published_with_its_hashed_copies_and_gzip(tmp_path):
    manifest = release(tmp_path / "v1", "body { color: red }")
    published = tmp_path / "published"
    published.mkdir()
    files, written = static.publish(tmp_path / "v1", published)
    hashed = manifest["site.css"]
    assert (files, written) == (4, 4)
    assert {p.name for p in published.iterdir() if p.is_file()} == {"site.css", "site.css.gz", hashed, f"{hashed}.gz"}
    assert (published / hashed).read_text() == "body { color: red }"
    assert oct((published / hashed).stat().st_mode & 0o777) == "0o644"  # nginx's user reads it
    assert static.publish(tmp_path / "v1", published) == (4, 0)  # again: nothing to write


def test_the_next_release_keeps_the_previous_ones_hashed_files(tmp_path):
    published = tmp_path / "published"
    published.mkdir()
    old = release(tmp_path / "app", "body { color: red }")["site.css"]
    static.publish(tmp_path / "app", published)
    new = release(tmp_path / "app", "body { color: blue }")["site.css"]
    static.publish(tmp_path / "app", published)
    assert old != new
    # A page of either release finds its stylesheet; the plain name is the new one's.
    assert (published / old).read_text() == "body { color: red }"
    assert (published / new).read_text() == "body { color: blue }"
    assert (published / "site.css").read_text() == "body { color: blue }"


def test_prune_keeps_what_the_newest_releases_name(tmp_path):
    published = tmp_path / "published"
    published.mkdir()
    names = []
    for n, colour in enumerate(("red", "green", "blue")):
        names.append(release(tmp_path / "app", f"body {{ color: {colour} }}")["site.css"])
        before = set((published / static.MANIFESTS).glob("*.json"))
        static.publish(tmp_path / "app", published)
        (added,) = set((published / static.MANIFESTS).glob("*.json")) - before
        # Releases a second apart, oldest first, whatever the clock's resolution.
        os.utime(added, (time.time() - 10 + n,) * 2)
    assert static.prune(published, keep=2) == 2  # the oldest's file and its .gz
    assert not (published / names[0]).exists() and not (published / f"{names[0]}.gz").exists()
    assert (published / names[1]).exists() and (published / names[2]).exists()
    assert (published / "site.css").exists()  # plain names are never pruned
    assert len(list((published / static.MANIFESTS).iterdir())) == 2


def test_a_rolled_back_release_counts_as_the_newest(tmp_path):
    published = tmp_path / "published"
    published.mkdir()
    manifests = published / static.MANIFESTS
    red = release(tmp_path / "app", "body { color: red }")["site.css"]
    static.publish(tmp_path / "app", published)
    for manifest in manifests.glob("*.json"):
        os.utime(manifest, (time.time() - 10,) * 2)
    blue = release(tmp_path / "app", "body { color: blue }")["site.css"]
    static.publish(tmp_path / "app", published)
    for manifest in manifests.glob("*.json"):
        if json.loads(manifest.read_text())["site.css"] == blue:
            os.utime(manifest, (time.time() - 5,) * 2)
    # The deploy is rolled back: red starts again, its manifest already there.
    release(tmp_path / "app", "body { color: red }")
    static.publish(tmp_path / "app", published)
    assert static.prune(published, keep=1) == 2  # blue's file and its .gz
    assert (published / red).exists() and not (published / blue).exists()


def test_prune_takes_its_directory_from_static_publish_dir(tmp_path, monkeypatch, capsys):
    # make static-prune names no directory: the container's setting does.
    published = tmp_path / "published"
    published.mkdir()
    monkeypatch.setenv("STATIC_PUBLISH_DIR", str(published))
    assert static.main(["prune", "--keep", "1"]) == 0
    assert "removed" in capsys.readouterr().out
    monkeypatch.setenv("STATIC_PUBLISH_DIR", "")
    assert static.main(["prune"]) == 2
    assert "STATIC_PUBLISH_DIR is not set" in capsys.readouterr().err
