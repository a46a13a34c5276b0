"""photodrag's defaults are PTI's as its official code runs them (issue 22), one test per behaviour.

The expected values are written from the facts of PTI's code (danielroich/PTI), not from ours:
1. projection: peak lr 0.01, stylegan2-ada's schedule from step 0 (t = step / steps;
   ramp = min(1, (1 - t) / 0.25); ramp = 0.5 - 0.5 cos(pi ramp); ramp *= min(1, t / 0.05));
2. the tuned generator holds the checkpoint's own noise maps (projection noise lives in a copy);
3. tuning's LPIPS (loss and 0.06 stop rule) sees the full-resolution images;
4. locality regularisation samples its latents with truncation 0.5 and renders them with noise_mode 'none'.
"""

import copy
import inspect
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import PORTRAIT, tiny_generator
from inversion.api import invert
from inversion.cache import InversionCache, cache_key
from inversion.config import InversionConfig, ProjectionConfig, TuningConfig, make_config
from inversion.perceptual import Perceptual
from inversion.projector import learning_rate, noise_buffers, project
from inversion.record import InversionRecord
from inversion.tuning import tune
from weights.checkpoint import save_generator
from weights.networks import MappingNetwork, SynthesisNetwork

# 0.5 - 0.5 cos(r pi) for the ramp-down fractions r = 0.8, 0.6, 0.4, 0.2, from cos(36 deg) = (1 + sqrt 5) / 4
# = 0.80901699 and cos(72 deg) = (sqrt 5 - 1) / 4 = 0.30901699: 0.5 + 0.5 * 0.80901699, 0.5 + 0.5 * 0.30901699, ...
RAMP_DOWN = {0.8: 0.904508497, 0.6: 0.654508497, 0.4: 0.345491503, 0.2: 0.095491503}


_BUILT = {}


def SpyLpips(net, resolution) -> Perceptual:
    """A random-backbone LPIPS that records the size of every image its trunk sees (in `.seen`)."""
    if net not in _BUILT:  # building a random VGG16 takes seconds: once per module, then copies
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            _BUILT[net] = Perceptual(net, random_backbone=True)
    spy = copy.deepcopy(_BUILT[net])
    spy.resolution, spy.seen = resolution, []
    spy.lpips.net.register_forward_pre_hook(lambda module, args: spy.seen.append(tuple(args[0].shape[-2:])))
    return spy


class SpyFactory:
    """The `perceptual(net, resolution)` dependency of `invert`, remembering what was asked for."""

    def __init__(self):
        self.nets = {}

    def __call__(self, net, resolution):
        if (net, resolution) not in self.nets:
            self.nets[(net, resolution)] = SpyLpips(net, resolution)
        return self.nets[(net, resolution)]


def small(config: InversionConfig, proj_steps=3, tune_steps=2) -> InversionConfig:
    """`config` with few steps (everything else as given)."""
    return replace(
        config,
        projection=replace(config.projection, steps=proj_steps, w_avg_samples=50),
        tuning=replace(config.tuning, steps=tune_steps, lpips_threshold=0.0),
    )


def image(res, seed=0):
    return (np.random.RandomState(seed).rand(res, res, 3) * 255).astype(np.uint8)


# 1. projection learning rate ------------------------------------------------------------------------------
def test_projection_peak_lr_and_schedule_values_are_ptis():
    cfg = ProjectionConfig()
    assert (cfg.steps, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown) == (450, 0.01, 0.05, 0.25)
    assert make_config("full").projection.lr == make_config("preview").projection.lr == 0.01
    expected = {
        0: 0.0,  # t = 0: the ramp-up factor is 0
        9: 0.004,  # t = 0.02: ramp-up 0.02 / 0.05 = 0.4
        18: 0.008,  # t = 0.04: 0.8
        23: 0.01,  # t = 0.0511: past the ramp-up
        270: 0.01,
        337: 0.01,  # t = 0.7489: (1 - t) / 0.25 = 1.004, still 1
        360: 0.01 * RAMP_DOWN[0.8],  # t = 0.8
        405: 0.01 * RAMP_DOWN[0.4],  # t = 0.9
    }
    for step, lr in expected.items():
        assert learning_rate(step, cfg) == pytest.approx(lr, rel=1e-8, abs=1e-12), step


def test_projection_applies_the_schedule_from_step_0(monkeypatch):
    """The lr of every optimiser step of a 20-step projection: 0 at step 0, then the peak 0.01, then the
    cosine ramp-down over the last quarter (t = 0.8, 0.85, 0.9, 0.95 -> r = 0.8, 0.6, 0.4, 0.2)."""
    used = []

    class SpyAdam(torch.optim.Adam):
        def step(self, *a, **k):
            used.append(self.param_groups[0]["lr"])
            return super().step(*a, **k)

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    G = tiny_generator(res=32)
    cfg = replace(ProjectionConfig(), steps=20, w_avg_samples=50)
    project(copy.deepcopy(G), torch.rand(1, 3, 32, 32) * 2 - 1, cfg, SpyLpips("alex", 256))
    expected = [0.0] + [0.01] * 15 + [0.01 * RAMP_DOWN[r] for r in (0.8, 0.6, 0.4, 0.2)]
    assert used == pytest.approx(expected, rel=1e-8, abs=1e-12)


# 2. the tuned generator's noise maps ----------------------------------------------------------------------
def _noise(G):
    return {k: v.clone() for k, v in noise_buffers(G).items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tuned_generator_holds_the_checkpoints_noise_maps(tmp_path):
    G = tiny_generator(res=32)
    checkpoint = _noise(G)
    cache = InversionCache(tmp_path / "cache")
    args = dict(perceptual=SpyFactory(), cache=cache, model_sha256="m", progress=False)
    res = invert(image(32), G, small(InversionConfig()), **args)
    assert not make_config().tuning.keep_projection_noise
    assert _equal(_noise(res.generator), checkpoint)
    assert not _equal(res.pivot.noise, checkpoint)  # the projection did optimise its own (copy's) noise
    assert _equal(_noise(G), checkpoint)  # the caller's generator is untouched
    assert res.metrics["tuning"]["noise_maps"] == "checkpoint"
    hit = invert(image(32), G, small(InversionConfig()), **args)
    assert hit.cache_hit and _equal(_noise(hit.generator), checkpoint)
    assert hit.metrics["tuning"]["noise_maps"] == "checkpoint"


def test_keep_projection_noise_tunes_the_projections_noise_maps():
    G = tiny_generator(res=32)
    cfg = small(make_config(keep_projection_noise=True))
    res = invert(image(32), G, cfg, perceptual=SpyFactory(), progress=False)
    assert _equal(_noise(res.generator), res.pivot.noise)
    assert not _equal(_noise(res.generator), _noise(G))
    assert res.metrics["tuning"]["noise_maps"] == "projection"


# 3. the resolution tuning's LPIPS sees -------------------------------------------------------------------
def test_tuning_lpips_and_its_stop_rule_see_the_full_resolution_images():
    """A 64 px generator with the projection's loss at 32 px: projection's LPIPS sees 32 x 32, tuning's (the
    loss and the threshold test of every step, and the final value) sees 64 x 64, undownsampled."""
    G = tiny_generator(res=64)
    base = InversionConfig()
    cfg = small(replace(base, projection=replace(base.projection, loss_resolution=32)), tune_steps=3)
    assert cfg.tuning.lpips_resolution is None and cfg.tuning.lpips_threshold == 0.0
    factory = SpyFactory()
    res = invert(image(64), G, cfg, perceptual=factory, progress=False)
    assert set(factory.nets) == {("vgg", 32), ("alex", 32), ("alex", None)} == set(cfg.perceptual_nets())
    tuning_net = factory.nets[("alex", None)]
    assert len(tuning_net.seen) >= 3 + 2 and set(tuning_net.seen) == {(64, 64)}  # target, 3 steps, final
    assert set(factory.nets[("vgg", 32)].seen) == {(32, 32)}
    stop = res.metrics["tuning"]["stop_lpips"]
    assert (stop["net"], stop["resolution"], stop["downsampled"]) == ("alex", 64, False)


def test_a_downsampled_tuning_lpips_is_named_as_such():
    """Both profiles tune on full-resolution LPIPS; a config that downsamples it (photodrag's old 256, kept
    as TuningConfig.lpips_resolution) is named as such in invert.json."""
    assert make_config("preview").tuning.lpips_resolution is None
    assert make_config("full").tuning.lpips_resolution is None
    G = tiny_generator(res=64)
    base = InversionConfig()
    cfg = small(replace(base, tuning=replace(base.tuning, lpips_resolution=32)))
    factory = SpyFactory()
    res = invert(image(64), G, cfg, perceptual=factory, progress=False)
    assert set(factory.nets[("alex", 32)].seen) == {(32, 32)}
    stop = res.metrics["tuning"]["stop_lpips"]
    assert (stop["resolution"], stop["downsampled"]) == (32, True)


def test_tune_stops_on_the_lpips_it_is_given():
    """The stop rule compares the given network's LPIPS with the threshold: with the threshold between the
    full-resolution and the downsampled value, only the network whose value is under it stops at once."""
    G = tiny_generator(res=64)
    pivot = G.mapping(torch.zeros(1, G.z_dim))
    target = torch.rand(1, 3, 64, 64) * 2 - 1
    nets = {"full": SpyLpips("alex", None), "32": SpyLpips("alex", 32)}
    with torch.no_grad():
        img = G.synthesis(pivot)
        value = {k: float(n(img, target)) for k, n in nets.items()}
    assert value["full"] != value["32"]
    cfg = TuningConfig(steps=5, lpips_threshold=sum(value.values()) / 2)
    steps = {k: tune(G, pivot, target, cfg, n).steps for k, n in nets.items()}
    low = min(value, key=value.get)
    assert steps[low] == 0 and min(steps.values()) == 0 and max(steps.values()) > 0


# 4. locality regularisation ------------------------------------------------------------------------------
def test_locality_samples_with_truncation_half_and_renders_without_noise(monkeypatch):
    calls = {"truncation": [], "pivot": [], "other": []}
    real_map, real_syn = MappingNetwork.forward, SynthesisNetwork.forward
    pivot_box = {}

    def spy_map(self, *a, **k):
        bound = inspect.signature(real_map).bind(self, *a, **k)
        bound.apply_defaults()
        calls["truncation"].append(bound.arguments["truncation_psi"])
        return real_map(self, *a, **k)

    def spy_syn(self, *a, **k):
        bound = inspect.signature(real_syn).bind(self, *a, **k)
        bound.apply_defaults()
        ws = bound.arguments["ws"]
        which = "pivot" if torch.equal(ws, pivot_box["w"]) else "other"
        calls[which].append(bound.arguments["noise_mode"])
        return real_syn(self, *a, **k)

    G = tiny_generator(res=32)
    pivot_box["w"] = pivot = G.mapping(torch.zeros(1, G.z_dim))
    monkeypatch.setattr(MappingNetwork, "forward", spy_map)
    monkeypatch.setattr(SynthesisNetwork, "forward", spy_syn)
    assert not TuningConfig().locality_regularization  # off by default, as in PTI
    cfg = TuningConfig(steps=2, lpips_threshold=0.0, locality_regularization=True)
    tune(G, pivot, torch.rand(1, 3, 32, 32) * 2 - 1, cfg, SpyLpips("alex", None))
    assert calls["truncation"] == [0.5, 0.5]  # one sampled latent per step
    assert calls["other"] == ["none"] * 4  # the frozen and the tuned generator, per step
    assert set(calls["pivot"]) == {"const"}


# the cache key and invert.json ---------------------------------------------------------------------------
def test_each_old_behaviour_has_its_own_cache_key():
    base = InversionConfig()
    p, t = base.projection, base.tuning
    variants = [
        base,
        replace(base, projection=replace(p, lr=5e-3)),
        replace(base, tuning=replace(t, keep_projection_noise=True)),
        replace(base, tuning=replace(t, lpips_resolution=256)),
        replace(base, tuning=replace(t, locality_truncation=1.0)),
        replace(base, tuning=replace(t, locality_noise_mode="const")),
    ]
    keys = {cache_key(image(16), "m", v.canonical_json()) for v in variants}
    assert len(keys) == len(variants)


def test_cli_keep_projection_noise_and_invert_json(tmp_path, home, monkeypatch, capsys):
    """`invert --keep-projection-noise` reaches the config; invert.json names the noise maps and the stop LPIPS."""
    from align.stage import run_align
    from helpers import cli

    run_align(PORTRAIT, tmp_path / "run", size=64)
    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=64), model)
    factory = SpyFactory()
    args = ["invert", str(tmp_path / "run"), "--model", str(model), "--projection-steps", "2", "--tuning-steps", "1"]
    for extra, noise in (([], "checkpoint"), (["--keep-projection-noise"], "projection")):
        code, _, err = cli(capsys, *args, *extra, lpips=lambda net, store, r: factory(net, r))
        assert code == 0, err
        record = InversionRecord.load(tmp_path / "run")
        assert record.tuned_noise_maps == noise
        assert record.stop_lpips_resolution == 64
        data = json.loads((tmp_path / "run" / "invert" / "invert.json").read_text())
        assert data["config"]["tuning"]["keep_projection_noise"] is (noise == "projection")
        assert data["config"]["tuning"]["lpips_resolution"] is None
