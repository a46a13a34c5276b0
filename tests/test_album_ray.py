"""Albums on a local Ray with 2 CPUs (marked `ray`; deselect with -m "not ray"): the same bytes as a
local album, the face-less photo failing alone, a killed worker retried, reruns skipped."""

import filecmp
import functools
import json
from pathlib import Path

import pytest

from album_helpers import (
    FACELESS,
    FACES,
    CrashOnceModels,
    RandomLpipsModels,
    album_photos,
    album_recipe,
    write_model,
)
from helpers import two_faces_photo
from pipeline.album import ALBUM_FILE, EditOptions, LocalExecutor, RayExecutor, run_album
from pipeline.recipe import parse_recipe

ray = pytest.importorskip("ray", reason="needs Ray: pip install -e '.[cluster]'")
pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module; its workers import this checkout (and tests/ for the test models)."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 2**20,
        log_to_driver=False,
        logging_level="error",
        runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return album_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def statuses(out: Path) -> dict:
    return {n: e["status"] for n, e in json.loads((out / ALBUM_FILE).read_text())["photos"].items()}


def test_workers_run_this_checkout(cluster):
    @ray.remote
    def where():
        import pipeline.album

        return pipeline.album.__file__

    assert ray.get(where.remote()) == str(ROOT / "pipeline" / "album.py")


def _worker_threads() -> int:
    """The torch threads of a one-CPU Ray worker (the album's workers ask for one CPU each)."""

    @ray.remote(num_cpus=1)
    def threads():
        import torch

        return torch.get_num_threads()

    return ray.get(threads.remote())


def local_album(photos, recipe, tmp_path):
    """The album run locally (into tmp_path/local, home tmp_path/h1) with the Ray workers' thread count:
    float sums split over another number of threads round differently, and a last-bit difference can
    flip a pixel of the JPEG."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(_worker_threads())
    try:
        return run_album(
            photos,
            recipe,
            tmp_path / "local",
            EditOptions(home=tmp_path / "h1", device="cpu"),
            LocalExecutor(RandomLpipsModels),
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)


def test_ray_album_matches_local_bytes_then_skips_then_recomputes(cluster, model, photos, tmp_path):
    """The same bytes as a local album run with the workers' thread count (local_album)."""
    recipe = parse_recipe(album_recipe(model))
    local = local_album(photos, recipe, tmp_path)
    opts = EditOptions(home=tmp_path / "h2", device="cpu")
    ex = RayExecutor(models_factory=RandomLpipsModels)
    first = run_album(photos, recipe, tmp_path / "ray", opts, ex, progress=False)
    assert (local.done, local.failed) == (first.done, first.failed) == (2, 1)
    album = json.loads((tmp_path / "ray" / ALBUM_FILE).read_text())["photos"]
    assert album[FACELESS]["status"] == "failed" and "no face found" in album[FACELESS]["reason"]
    for name in FACES:
        assert album[name]["status"] == "done"
        assert filecmp.cmp(tmp_path / "local" / name, tmp_path / "ray" / name, shallow=False), name

    again = run_album(photos[:2], recipe, tmp_path / "ray", opts, ex, progress=False)
    assert (again.skipped, again.done, again.failed) == (2, 0, 0)

    changed = parse_recipe(album_recipe(model, drag={"steps": 4}))
    redo = run_album(photos[:2], changed, tmp_path / "ray", opts, ex, progress=False)
    assert (redo.done, redo.skipped) == (2, 0)
    assert all(statuses(tmp_path / "ray")[n] == "done" for n in FACES)


def test_a_killed_worker_is_retried_and_every_photo_completes(cluster, model, photos, tmp_path):
    marker = tmp_path / "killed.pid"
    ex = RayExecutor(models_factory=functools.partial(CrashOnceModels, str(marker)))
    summary = run_album(
        photos[:2],
        parse_recipe(album_recipe(model)),
        tmp_path / "out",
        EditOptions(home=tmp_path / "h", device="cpu"),
        ex,
        progress=False,
    )
    assert marker.read_text().isdigit()  # a worker process did exit mid-album
    assert (summary.done, summary.failed) == (2, 0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([ALBUM_FILE, *FACES])


def test_ray_album_edits_every_face(cluster, model, tmp_path):
    """--face all on Ray: each worker edits every face of its photo in RUN/faces/N and writes one output, the
    same bytes and the same album.json record (per-face identity figures) as a local album."""
    photo = two_faces_photo(tmp_path)
    over = dict(drags=[], presets={"smile": 1.0}, align={"face": "all"}, drag={"steps": 2, "lr": 0.05})
    recipe = parse_recipe(album_recipe(model, **over))
    local = local_album([photo], recipe, tmp_path)
    opts = EditOptions(home=tmp_path / "h", device="cpu")
    ex = RayExecutor(models_factory=RandomLpipsModels)
    summary = run_album([photo], recipe, tmp_path / "out", opts, ex, progress=False)
    assert (summary.done, summary.failed) == (local.done, local.failed) == (1, 0)
    (run,) = (tmp_path / "h" / "runs").iterdir()
    record = json.loads((run / "composite" / "composite.json").read_text())
    assert [f["face"] for f in record["faces"]] == [0, 1]
    name = "two_faces_edited.jpg"
    assert filecmp.cmp(tmp_path / "local" / name, tmp_path / "out" / name, shallow=False)
    entries = [json.loads((tmp_path / d / ALBUM_FILE).read_text())["photos"][name] for d in ("local", "out")]
    for entry in entries:
        entry.pop("seconds")
    assert entries[0] == entries[1] and sorted(entries[1]["face_identity"]) == ["0", "1"]
