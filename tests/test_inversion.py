"""PTI on tiny real-architecture generators: projection, tuning, cache, stage files, CLI."""

import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from common.errors import MissingWeightsError, UsageError
from helpers import PORTRAIT, mirrored_portrait, tiny_generator
from inversion.api import Pivot, invert
from inversion.cache import InversionCache
from inversion.config import InversionConfig, ProjectionConfig, TuningConfig
from inversion.perceptual import Perceptual, load_perceptual
from inversion.projector import project
from inversion.stage import load_inversion, run_invert
from inversion.tuning import tune
from weights.checkpoint import save_generator
from weights.store import WeightStore


@pytest.fixture(scope="module")
def lp():
    """Random-backbone LPIPS networks, asked for explicitly (tests have no ImageNet weights)."""
    return {net: Perceptual(net, random_backbone=True, resolution=256) for net in ("alex", "vgg")}


def factory(lp):
    return lambda net, res: lp[net]


def fast_config(proj_steps=20, tune_steps=10, threshold=0.0, w_plus=False):
    return InversionConfig(
        projection=ProjectionConfig(steps=proj_steps, w_plus=w_plus, w_avg_samples=200),
        tuning=TuningConfig(steps=tune_steps, lpips_threshold=threshold),
    )


def real_face(res):
    path = PORTRAIT
    from align.align import align_face
    from common.images import load_photo

    return align_face(load_photo(path).rgb, size=res).aligned


def test_projection_recovers_a_generated_target(lp):
    """Thresholds: the W projection of an image the generator made from a known w must cut the
    MSE by at least 3x and LPIPS by at least 2x relative to the w_avg start (a random-backbone
    LPIPS is a weaker guide than the real one, so the bounds are conservative)."""
    G = tiny_generator(res=32, seed=3)
    torch.manual_seed(5)
    with torch.no_grad():
        w_true = G.mapping(torch.randn(1, G.z_dim), truncation_psi=0.7)
        target = G.synthesis(w_true)
        start = G.synthesis(G.mapping.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1))
    cfg = ProjectionConfig(steps=150, lr=0.05, w_avg_samples=200)
    Gw = copy.deepcopy(G)
    proj = project(Gw, target, cfg, lp["vgg"], seed=0)
    with torch.no_grad():
        img = Gw.synthesis(proj.w)
    assert F.mse_loss(img, target) < F.mse_loss(start, target) / 3
    assert lp["alex"](img, target) < lp["alex"](start, target) / 2
    assert proj.history[-1] < proj.history[0] / 2


def test_w_and_w_plus_shapes_and_determinism(lp):
    G = tiny_generator(res=32)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    a = project(copy.deepcopy(G), target, ProjectionConfig(steps=5, w_avg_samples=50), lp["alex"], seed=1)
    b = project(copy.deepcopy(G), target, ProjectionConfig(steps=5, w_avg_samples=50), lp["alex"], seed=1)
    plus = project(
        copy.deepcopy(G), target, ProjectionConfig(steps=5, w_plus=True, w_avg_samples=50), lp["alex"], seed=1
    )
    assert a.w.shape == plus.w.shape == (1, G.num_ws, G.w_dim)
    assert torch.equal(a.w, a.w[:, :1].expand_as(a.w))  # W: one vector for every layer
    assert not torch.equal(plus.w, plus.w[:, :1].expand_as(plus.w))  # W+: layers differ
    torch.testing.assert_close(a.w, b.w, rtol=0, atol=0)  # deterministic on CPU for a seed
    assert set(a.noise) == {n for n, _ in G.synthesis.named_buffers() if n.endswith("noise_const")}


def test_the_cli_asks_mkl_for_repeatable_results():
    """MKL's GEMMs take alignment-dependent paths (the test above then differs in the last bit), so
    the command line turns on its conditional numerical reproducibility before any work."""
    code = (
        "import os, run_pipeline\n"
        "os.environ.pop('MKL_CBWR', None)\n"
        "try:\n    run_pipeline.main(['presets'])\nexcept SystemExit:\n    pass\n"
        "print('MKL_CBWR=' + os.environ.get('MKL_CBWR', 'unset'))"
    )
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert out.stdout.strip().splitlines()[-1] == "MKL_CBWR=AUTO", out.stderr[-500:]


def test_tuning_fits_a_real_face_and_leaves_the_base_untouched(lp):
    G = tiny_generator(res=64, dim=64)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    target = torch.from_numpy(real_face(64).astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    pivot = G.mapping(torch.zeros(1, G.z_dim))
    with torch.no_grad():
        mse0 = float(F.mse_loss(G.synthesis(pivot), target))
    res = tune(G, pivot, target, TuningConfig(steps=60, lpips_threshold=0.0), lp["alex"])
    assert res.steps == 60 and not res.stopped_early
    assert res.mse < mse0 / 1.5  # the portrait's flag and shuttle behind the face: 1.8x in 60 steps
    for k, v in G.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in res.generator.state_dict().items())


def test_tuning_stops_early_at_the_threshold(lp):
    G = tiny_generator(res=32)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    pivot = G.mapping(torch.zeros(1, G.z_dim))
    res = tune(G, pivot, target, TuningConfig(steps=50, lpips_threshold=10.0), lp["alex"])
    assert res.stopped_early and res.steps == 0
    res = tune(G, pivot, target, TuningConfig(steps=3, lpips_threshold=0.0), lp["alex"])
    assert not res.stopped_early and res.steps == 3


def test_locality_regularization_changes_the_tuning(lp):
    """The regulariser is a real term of the loss: on, the tuned weights differ from plain PTI's."""
    G = tiny_generator(res=32)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    pivot = G.mapping(torch.zeros(1, G.z_dim))
    tuned = {
        on: tune(G, pivot, target, TuningConfig(steps=3, lpips_threshold=0.0, locality_regularization=on), lp["alex"])
        for on in (False, True)
    }
    assert tuned[True].steps == tuned[False].steps == 3
    a, b = (dict(tuned[on].generator.named_parameters()) for on in (False, True))
    assert any(not torch.equal(a[k], b[k]) for k in a)


class _Counter:
    def __init__(self, monkeypatch):
        import inversion.api as api

        self.calls = 0
        real = api.project

        def counted(*a, **k):
            self.calls += 1
            return real(*a, **k)

        monkeypatch.setattr(api, "project", counted)


def test_cache_hit_miss_and_invalidation(lp, tmp_path, monkeypatch):
    G = tiny_generator(res=32)
    img = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)
    cache = InversionCache(tmp_path / "cache")
    counter = _Counter(monkeypatch)
    cfg = fast_config()
    first = invert(img, G, cfg, perceptual=factory(lp), cache=cache, model_sha256="m1", progress=False)
    assert not first.cache_hit and counter.calls == 1
    second = invert(img, G, cfg, perceptual=factory(lp), cache=cache, model_sha256="m1", progress=False)
    assert second.cache_hit and counter.calls == 1  # no optimisation step ran
    torch.testing.assert_close(second.pivot.w, first.pivot.w, rtol=0, atol=0)
    z = torch.randn(1, G.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(second.generator(z), first.generator(z), rtol=0, atol=0)
    invert(img, G, fast_config(tune_steps=11), perceptual=factory(lp), cache=cache, model_sha256="m1", progress=False)
    assert counter.calls == 2  # other config
    img2 = img.copy()
    img2[0, 0, 0] ^= 1
    invert(img2, G, cfg, perceptual=factory(lp), cache=cache, model_sha256="m1", progress=False)
    assert counter.calls == 3  # other image (one pixel)
    invert(img, G, cfg, perceptual=factory(lp), cache=cache, model_sha256="m2", progress=False)
    assert counter.calls == 4  # other model
    assert len(cache.entries()) == 4


def test_truncated_entry_is_detected_and_recomputed(lp, tmp_path, monkeypatch):
    G = tiny_generator(res=32)
    img = (np.random.RandomState(1).rand(32, 32, 3) * 255).astype(np.uint8)
    warnings = []
    cache = InversionCache(tmp_path / "cache", warn=warnings.append)
    counter = _Counter(monkeypatch)
    res = invert(img, G, fast_config(), perceptual=factory(lp), cache=cache, model_sha256="m", progress=False)
    gen = res.cache_path / "generator.safetensors"
    gen.write_bytes(gen.read_bytes()[: gen.stat().st_size // 2])
    again = invert(img, G, fast_config(), perceptual=factory(lp), cache=cache, model_sha256="m", progress=False)
    assert not again.cache_hit and counter.calls == 2
    assert warnings and "damaged" in warnings[0]
    assert cache.get(again.cache_key) is not None  # rewritten intact


def test_concurrent_writers_leave_one_intact_entry(tmp_path):
    cache = InversionCache(tmp_path / "cache")
    G = tiny_generator(res=16)
    pivot = Pivot(w=torch.randn(1, G.num_ws, G.w_dim))

    def writer(delay):
        def write(folder: Path):
            pivot.save(folder / "pivot.safetensors")
            time.sleep(delay)
            save_generator(G, folder / "generator.safetensors")

        cache.put("k" * 64, write, {"who": delay})

    threads = [threading.Thread(target=writer, args=(d,)) for d in (0.05, 0.1, 0.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entry = cache.get("k" * 64)
    assert entry is not None and len(cache.entries()) == 1
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_eviction_respects_the_limit_and_recency(tmp_path):
    G = tiny_generator(res=16)
    pivot = Pivot(w=torch.randn(1, G.num_ws, G.w_dim))

    def write(folder):
        pivot.save(folder / "pivot.safetensors")
        save_generator(G, folder / "generator.safetensors")

    probe = InversionCache(tmp_path / "probe")
    one = probe.put("p" * 64, write, {}).size
    cache = InversionCache(tmp_path / "cache", limit_bytes=int(one * 2.5))
    for age, key in ((200, "a"), (100, "b")):  # explicit times, not sleeps: b newer than a
        entry = cache.put(key * 64, write, {})
        os.utime(entry.path, (time.time() - age, time.time() - age))
    cache.get("a" * 64)  # a is now the most recently used
    cache.put("c" * 64, write, {})
    keys = {e.key[0] for e in cache.entries()}
    assert keys == {"a", "c"} and cache.total_size() <= cache.limit_bytes


def _aligned_run(tmp_path, res):
    from align.stage import run_align

    path = PORTRAIT
    run_align(path, tmp_path / "run", size=res)
    return tmp_path / "run"


def test_stage_files_and_staleness(lp, tmp_path):
    run = _aligned_run(tmp_path, 64)
    G = tiny_generator(res=64)
    res = run_invert(run, G, "tiny", "sha", fast_config(), factory(lp), InversionCache(tmp_path / "c"), progress=False)
    d = run / "invert"
    assert sorted(p.name for p in d.iterdir()) == [
        "compare.png",
        "generator.json",
        "invert.json",
        "pivot.safetensors",
        "reconstruction.png",
    ]
    rec = json.loads((d / "invert.json").read_text())
    assert rec["model"]["name"] == "tiny" and rec["projection"]["steps"] == 20 and rec["tuning"]["steps"] == 10
    assert rec["cache"]["hit"] is False and rec["cache"]["key"] == res.cache_key
    assert Image.open(d / "reconstruction.png").size == (64, 64)
    w, tuned, _ = load_inversion(run)
    assert w.shape == (1, G.num_ws, G.w_dim)
    # a re-aligned (different) image makes the inversion stale
    from align.stage import run_align

    run_align(mirrored_portrait(tmp_path), run, size=64)
    with pytest.raises(UsageError, match="another aligned image"):
        load_inversion(run)


def test_stage_refuses_wrong_resolution_and_missing_align(lp, tmp_path):
    run = _aligned_run(tmp_path, 128)
    with pytest.raises(UsageError, match="re-run align with --size 32"):
        run_invert(run, tiny_generator(res=32), "tiny", "sha", fast_config(), factory(lp), None, progress=False)
    assert not (run / "invert").exists()
    with pytest.raises(UsageError, match="run `photodrag align"):
        run_invert(tmp_path / "empty", tiny_generator(res=32), "t", "s", fast_config(), factory(lp), None)


def test_no_cache_writes_the_generator_into_the_run(lp, tmp_path):
    run = _aligned_run(tmp_path, 64)
    run_invert(run, tiny_generator(res=64), "tiny", "sha", fast_config(), factory(lp), None, progress=False)
    assert (run / "invert" / "generator.safetensors").exists()
    assert not (run / "invert" / "generator.json").exists()


def test_missing_backbone_is_a_clear_error(tmp_path, monkeypatch):
    store = WeightStore(tmp_path / "home")
    with pytest.raises(MissingWeightsError, match="lpips-alex.*weights fetch lpips-alex"):
        load_perceptual("alex", store, fetch=False)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_backbone_file_is_loaded_into_lpips(tmp_path):
    """Our loader puts a torchvision AlexNet file into LPIPS exactly as torchvision's own weights would sit."""
    import lpips
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.alexnet()
    path = tmp_path / "alex.pth"
    torch.save(tv.state_dict(), path)
    mine = Perceptual("alex", backbone_path=str(path))
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    for block in ref.net.children():
        for idx, layer in block.named_children():
            layer.load_state_dict(tv.features[int(idx)].state_dict())
    a, b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(mine(a, b), ref(a, b).mean())
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(Exception, match="does not fit"):
        Perceptual("alex", backbone_path=str(bad))


def test_cli_invert_twice_is_a_cache_hit_and_cache_commands(lp, tmp_path, home, monkeypatch, capsys):
    from run_pipeline import main

    run = _aligned_run(tmp_path, 64)
    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=64), model)

    def cli(*argv):
        with pytest.raises(SystemExit) as exc:
            main(list(argv), lpips=lambda net, store, r: lp[net])
        out, err = capsys.readouterr()
        return exc.value.code, out, err

    args = [
        "--device",
        "cpu",
        "invert",
        str(run),
        "--model",
        str(model),
        "--projection-steps",
        "5",
        "--tuning-steps",
        "3",
        "--lpips-threshold",
        "0",
    ]
    code, out, err = cli(*args)
    assert code == 0, err
    assert json.loads((run / "invert" / "invert.json").read_text())["cache"]["hit"] is False
    code, out, err = cli(*args)
    assert code == 0 and "cache hit" in err
    assert json.loads((run / "invert" / "invert.json").read_text())["cache"]["hit"] is True
    code, out, _ = cli("cache", "ls")
    assert code == 0 and "1 entries" in out
    assert "  astronaut.jpg  tiny.safetensors  made " in out.splitlines()[0] and " s ago" in out  # photo, model, age
    key = out.split()[0]
    code, out, _ = cli("cache", "info", key)
    assert code == 0 and json.loads(out)["key"].startswith(key)
    code, out, _ = cli("cache", "du")
    assert code == 0 and "1 entries" in out
    code, out, _ = cli("cache", "rm", key)
    assert code == 0 and "removed" in out
    code, _, err = cli("cache", "rm", key)
    assert code == 2 and "no cache entry" in err
    code, out, _ = cli("cache", "clear")
    assert code == 0 and "removed 0" in out
