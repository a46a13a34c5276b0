"""The one opener of the networks (pipeline.models.open_models) and what it checks up front:
every missing file named at once, hand-placed files checked like `weights import`, the defaults
that agree (align's size is the default model's)."""

import json

import pytest

from align.align import AlignConfig
from common.errors import CheckpointError, MissingWeightsError
from common.fileio import sha256_file
from helpers import PORTRAIT, cli, mirrored_portrait, no_network, tiny_generator, write_nvidia_pickle
from pipeline.models import LoadedModels, open_models
from weights.checkpoint import save_generator
from weights.networks import Generator
from weights.registry import DEFAULT_MODEL, REGISTRY
from weights.store import WeightStore


def test_open_models_names_the_model_and_reuses_loaded_networks(tmp_path):
    import torch

    from inversion.perceptual import Perceptual

    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=32), model)
    built = []

    def lpips(net, store, resolution):
        built.append((net, resolution))
        return Perceptual(net, random_backbone=True, resolution=resolution)

    loaded, store, cpu = LoadedModels(lpips=lpips), WeightStore(tmp_path / "home"), torch.device("cpu")
    nets = [("alex", None)]
    a = open_models(str(model), store, cpu, nets, loaded=loaded, landmarks=False)
    b = open_models(str(model), store, cpu, nets, loaded=loaded, landmarks=False)
    assert a.chosen == b.chosen and a.chosen.name == str(model) and a.chosen.resolution == 32
    assert a.chosen.sha256 == sha256_file(model) and a.chosen.path == model
    assert a.generator() is b.generator()
    assert a.perceptual("alex", None) is b.perceptual("alex", None)
    assert built == [("alex", None)]  # built once, for both
    assert not (tmp_path / "home" / "weights").exists()  # a given LPIPS loader needs no store files


def test_store_lpips_needs_the_profiles_backbones():
    from inversion.config import make_config

    full, preview = (LoadedModels().files("ffhq-512", make_config(p).perceptual_nets()) for p in ("full", "preview"))
    assert sorted(full) == ["dlib-landmarks-68", "ffhq-512", "lpips-alex", "lpips-vgg16"]
    assert sorted(preview) == ["dlib-landmarks-68", "ffhq-512", "lpips-alex"]
    assert LoadedModels(lpips=lambda *a: None).files("ffhq-512", [("vgg", None)], landmarks=False) == ["ffhq-512"]


def test_resolve_names_every_missing_file_in_one_message(tmp_path):
    with pytest.raises(MissingWeightsError) as exc:
        WeightStore(tmp_path / "home", progress=False, opener=no_network).resolve(
            ["ffhq-512", "lpips-alex", "lpips-vgg16", "ffhq-512"]
        )
    lines = str(exc.value).splitlines()
    assert lines[0] == "missing weights: 3 files this run needs"
    assert [line.split()[0] for line in lines[1:4]] == ["ffhq-512", "lpips-alex", "lpips-vgg16"]
    assert lines[1].endswith("about 364 MB") and lines[2].endswith("233 MiB")  # each file's size
    assert lines[4] == (
        "download failed: cannot reach api.ngc.nvidia.com, download.pytorch.org (network is unreachable (test))"
    )
    assert lines[5] == "fetch: photodrag weights fetch ffhq-512 lpips-alex lpips-vgg16"
    assert str(tmp_path / "home" / "weights") in lines[6] and "weights import NAME FILE" in lines[6]
    assert "https://" not in str(exc.value)  # no URL repeated per file


@pytest.mark.parametrize(
    "profile, names", [([], ["ffhq-512", "lpips-alex", "lpips-vgg16"]), (["--preview"], ["ffhq-512", "lpips-alex"])]
)
def test_edit_without_weights_names_them_all_before_align_runs(tmp_path, home, capsys, profile, names):
    run_dir, out = tmp_path / "run", tmp_path / "e.jpg"
    argv = ["edit", str(PORTRAIT), "--preset", "smile=0.5", "-o", str(out), "--run-dir", str(run_dir), *profile]
    code, _, err = cli(capsys, *argv, lpips=None, opener=no_network)  # the store's LPIPS, as a user runs it
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[0] == f"photodrag: error: missing weights: {len(names)} files this run needs"
    assert [line.split()[0] for line in lines[1 : 1 + len(names)]] == names  # one line per file
    assert f"fetch: photodrag weights fetch {' '.join(names)}" in lines
    assert all(err.count(f"  {n} ") == 1 for n in names)
    assert not run_dir.exists() and not out.exists() and not (home / "runs").exists()  # align never ran


def test_invert_without_weights_names_them_all(tmp_path, home, capsys):
    code, _, err = cli(capsys, "align", str(PORTRAIT), "--out", str(tmp_path / "run"), "--size", "256")
    assert code == 0, err
    code, _, err = cli(capsys, "invert", str(tmp_path / "run"), "--preview", lpips=None, opener=no_network)
    assert code == 2 and "missing weights: 2 files" in err
    assert "fetch: photodrag weights fetch ffhq-256 lpips-alex" in err
    assert not (tmp_path / "run" / "invert").exists()


def _generator_256():
    return Generator(
        z_dim=512,
        w_dim=512,
        img_resolution=256,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=256, channel_max=8),
    )


def test_a_hand_placed_file_is_checked_and_recorded_like_an_import(tmp_path):
    home = tmp_path / "home"
    store = WeightStore(home, progress=False)
    path = home / "weights" / REGISTRY["ffhq-256"].filename
    path.parent.mkdir(parents=True)
    write_nvidia_pickle(path, _generator_256())
    assert store.status("ffhq-256").source == "-"
    assert store.resolve(["ffhq-256"]) == {"ffhq-256": path}
    st = store.status("ffhq-256")
    assert st.source == "import" and st.sha256 == sha256_file(path)
    assert json.loads(store.manifest_path.read_text())["ffhq-256"]["imported_from"] == str(path)


def test_a_wrong_hand_placed_file_gets_the_import_diagnosis(tmp_path, capsys, home):
    path = home / "weights" / REGISTRY[DEFAULT_MODEL].filename
    path.parent.mkdir(parents=True)
    write_nvidia_pickle(path, tiny_generator(res=64))
    with pytest.raises(CheckpointError, match="without `photodrag weights import`.*64px generator"):
        WeightStore(home).require(DEFAULT_MODEL)
    out = tmp_path / "e.jpg"
    code, _, err = cli(
        capsys, "edit", str(PORTRAIT), "--preset", "smile=0.5", "-o", str(out), "--run-dir", str(tmp_path / "r")
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "64px generator" in err and "needs 512px" in err and "--size" not in err
    assert not (tmp_path / "r").exists()


def test_align_defaults_to_the_default_models_resolution(tmp_path, home, capsys):
    assert AlignConfig().size == REGISTRY[DEFAULT_MODEL].resolution == 512
    code, _, err = cli(capsys, "align", str(PORTRAIT), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "align" / "align.json").read_text())["size"] == 512


# one freshness rule, one integrity check ---------------------------------------------------------
def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_a_stage_made_from_another_upstream_file_is_stale_through_the_one_rule(tmp_path):
    from common.errors import UsageError
    from common.fileio import file_digests
    from drag.record import DragRecord
    from inversion.record import InversionRecord

    run = tmp_path / "run"
    _write_json(run / "invert" / "invert.json", {"format_version": 1})
    (run / "drag").mkdir()
    (run / "drag" / "edited.png").write_bytes(b"png")
    drag = {"invert_sha256": sha256_file(run / "invert" / "invert.json")}
    _write_json(run / "drag" / "drag.json", dict(drag, files=file_digests(run / "drag", ["edited.png"])))
    assert DragRecord.load_fresh(run).invert_sha256 == drag["invert_sha256"]
    assert DragRecord.read_intact(run) is not None
    _write_json(run / "invert" / "invert.json", {"format_version": 1, "again": True})  # invert ran again
    with pytest.raises(UsageError, match=r"drag was made from another inversion; re-run drag"):
        DragRecord.load_fresh(run)
    assert DragRecord.read_intact(run) is None  # `edit` recomputes the drag
    (run / "align").mkdir()
    (run / "align" / "aligned.png").write_bytes(b"one")
    _write_json(run / "invert" / "invert.json", {"aligned_sha256": sha256_file(run / "align" / "aligned.png")})
    assert InversionRecord.load_fresh(run)
    (run / "align" / "aligned.png").write_bytes(b"two")
    with pytest.raises(UsageError, match="made for another aligned image; re-run `photodrag invert"):
        InversionRecord.load_fresh(run)


def test_cache_entries_and_run_files_share_one_integrity_check(tmp_path):
    from common.fileio import check_digests, file_digests
    from inversion.cache import ENTRY_FILES, FORMAT_VERSION, check_entry

    entry = tmp_path / "entry"
    entry.mkdir()
    for i, name in enumerate(ENTRY_FILES):
        (entry / name).write_bytes(bytes([i]) * 100)
    digests = file_digests(entry, ENTRY_FILES)
    meta = {
        "format_version": FORMAT_VERSION,
        "sizes": {n: d["size"] for n, d in digests.items()},
        "sha256": {n: d["sha256"] for n, d in digests.items()},
    }
    _write_json(entry / "meta.json", meta)
    assert check_entry(entry) is None and check_digests(entry, digests) is None
    first = entry / ENTRY_FILES[0]
    first.write_bytes(first.read_bytes()[:50])
    assert check_entry(entry) == check_digests(entry, digests) == f"{ENTRY_FILES[0]} has the wrong size (truncated?)"
    first.write_bytes(b"x" * 100)
    assert check_entry(entry) == check_digests(entry, digests) == f"{ENTRY_FILES[0]} does not match its recorded hash"
    first.unlink()
    assert check_entry(entry) == check_digests(entry, digests) == f"{ENTRY_FILES[0]} is missing"


def test_an_album_without_weights_names_them_all_before_any_photo(tmp_path, home, capsys):
    photos = [PORTRAIT, mirrored_portrait(tmp_path)]
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"presets": {"smile": 0.5}, "invert": {"profile": "preview"}}))
    out = tmp_path / "album"
    code, _, err = cli(
        capsys, "edit", *map(str, photos), "--recipe", str(recipe), "-o", str(out), lpips=None, opener=no_network
    )
    assert code == 2 and "missing weights: 2 files" in err, err
    assert "fetch: photodrag weights fetch ffhq-512 lpips-alex" in err
    assert not out.exists() and not (home / "runs").exists()
