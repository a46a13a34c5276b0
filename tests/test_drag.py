"""DragGAN: pure functions, the engine on a controllable field and on tiny generators, stage and CLI."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import UsageError
from drag import features as ops
from drag.engine import DragConfig, DragEngine
from drag.points import circle_mask, parse_drag, to_aligned
from helpers import tiny_generator


# pure functions ------------------------------------------------------------------------------
def test_sampling_matches_the_resized_map_at_pixels():
    torch.manual_seed(0)
    feat = torch.randn(1, 5, 16, 16)
    full = F.interpolate(feat, size=(64, 64), mode="bilinear")
    pts = torch.tensor([[0.0, 0.0], [63.0, 63.0], [10.0, 37.0], [31.0, 2.0]])
    got = ops.sample(feat, pts, 64)
    want = torch.stack([full[0, :, int(y), int(x)] for x, y in pts])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_tracking_finds_a_planted_feature():
    feat = torch.zeros(1, 4, 64, 64)
    feat[0, :, 40, 27] = torch.tensor([1.0, -2.0, 3.0, 0.5])  # at (x=27, y=40)
    ref = feat[0, :, 40, 27].clone()[None]
    new = ops.track(feat, ref, torch.tensor([[30.0, 35.0]]), r2=6, size=64)
    assert new.tolist() == [[27.0, 40.0]]
    # outside the window: not found (stays on a zero feature somewhere else)
    far = ops.track(feat, ref, torch.tensor([[5.0, 5.0]]), r2=3, size=64)
    assert far.tolist() != [[27.0, 40.0]]


def test_tracking_window_is_clipped_to_the_image():
    feat = torch.randn(1, 3, 32, 32)
    ref = ops.sample(feat, torch.tensor([[0.0, 0.0]]), 32)
    assert ops.track(feat, ref, torch.tensor([[1.0, 1.0]]), r2=4, size=32).tolist() == [[0.0, 0.0]]


def test_motion_loss_on_a_ramp_and_radius_rules():
    x = torch.arange(64, dtype=torch.float32)
    feat = x.reshape(1, 1, 1, 64).expand(1, 1, 64, 64).contiguous()  # feature = x coordinate
    loss = ops.motion_loss(feat, torch.tensor([[20.0, 20.0]]), torch.tensor([[30.0, 20.0]]), r1=3, size=64)
    assert abs(float(loss) - 1.0) < 1e-5  # F(q + (1, 0)) - F(q) = 1 everywhere
    near = ops.motion_loss(feat, torch.tensor([[20.0, 20.0]]), torch.tensor([[20.5, 20.0]]), r1=3, size=64)
    assert float(near) == 0.0  # handles within 1 px contribute nothing
    assert len(ops.disc_offsets(3)) == 25 and len(ops.square_offsets(2)) == 25
    assert [ops.scale_radius(3, s) for s in (64, 256, 512, 1024)] == [1, 2, 3, 6]
    assert [ops.scale_radius(12, s) for s in (256, 512, 1024)] == [6, 12, 24]


def test_motion_loss_gradient_pushes_content_along_d():
    feat = torch.randn(1, 3, 32, 32, requires_grad=True)
    ops.motion_loss(feat, torch.tensor([[10.0, 10.0]]), torch.tensor([[20.0, 10.0]]), r1=2, size=32).backward()
    g = feat.grad[0].abs().sum(0)
    assert g[10, 11] > 0 and g[10, 9] == 0  # only F(q + d) (to the right) receives gradient


def test_mask_loss_only_sees_the_fixed_region():
    f0 = torch.zeros(1, 2, 8, 8)
    f = f0.clone()
    f[..., :4] = 1.0  # change the left half
    movable = torch.zeros(32, 32)
    movable[:, :16] = 1  # the left half may move
    assert float(ops.mask_loss(f, f0, movable)) == 0.0
    assert float(ops.mask_loss(f, f0, 1 - movable)) == pytest.approx(0.5)


# the engine on a field whose content moves with w --------------------------------------------
class _FieldSynthesis(torch.nn.Module):
    """Features: a textured bump centred at 64 + 400 * w[0, 0, :2] (the content moves with w)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.freq = torch.randn(8, 2, generator=g) * 0.25
        self.phase = torch.rand(8, generator=g) * 6.28
        yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
        self.grid = torch.stack([xx, yy], -1)

    def block_names(self):
        return ["b128"]

    def features(self, ws, block, noise_mode="const"):
        c = 64 + 400 * ws[0, 0, :2]
        rel = self.grid - c
        env = torch.exp(-rel.square().sum(-1) / (2 * 18.0**2))
        waves = torch.cos(rel @ self.freq.t() + self.phase)  # [128, 128, 8]
        return (waves * env[..., None]).permute(2, 0, 1)[None]

    def forward(self, ws, noise_mode="const", return_features=()):
        f = self.features(ws, "b128")
        return (f[:, :3], {"b128": f}) if return_features else f[:, :3]


class _Field(torch.nn.Module):
    """Stand-in generator whose only job is to move its content with w."""

    img_resolution = 128

    def __init__(self, synthesis=None):
        super().__init__()
        self.synthesis = synthesis or _FieldSynthesis()


def test_engine_moves_the_handle_to_the_target_on_a_movable_field():
    w0 = torch.zeros(1, 8, 2)
    engine = DragEngine(_Field(), w0, [[64, 64]], [[72, 58]], config=DragConfig(steps=200, lr=2e-3))
    seen = []
    state = engine.run(seen.append)
    assert state.reason == "reached" and state.distances[0] <= 1.0
    assert len(seen) == state.step + 1  # the callback saw every step
    assert state.history[-1] < state.history[0] - 8
    assert torch.equal(state.w[:, 6:], w0[:, 6:])  # only the first 6 layers move


def test_engine_is_a_plain_step_function():
    engine = DragEngine(_Field(), torch.zeros(1, 8, 2), [[64, 64]], [[70, 64]], config=DragConfig(steps=3))
    s0 = engine.start()
    s1 = engine.step(s0)
    assert s0.step == 0 and s1.step == 1 and not s1.done
    s = s1
    while not s.done:
        s = engine.step(s)
    assert s.reason in ("max_steps", "reached") and engine.step(s) is s


def test_stall_is_detected():
    class Frozen(_FieldSynthesis):
        def features(self, ws, block, noise_mode="const"):
            return super().features(ws * 0, block) + 0 * ws.sum()

    engine = DragEngine(
        _Field(Frozen()), torch.zeros(1, 8, 2), [[64, 64]], [[72, 64]], config=DragConfig(steps=300, stall_steps=10)
    )
    state = engine.run()
    assert state.reason == "stalled" and state.step < 20


def test_the_reach_comes_from_the_config():
    """The 1 px / 2 px stop rule: DragConfig.reach up to reach_few points, reach_many beyond."""
    cfg = DragConfig()
    assert [cfg.stop_distance(n) for n in (1, 5, 6, 20)] == [1.0, 1.0, 2.0, 2.0]
    near = [[64, 64]], [[67, 64]]  # 3 px to go
    assert DragEngine(_Field(), torch.zeros(1, 8, 2), *near, config=DragConfig(reach=4.0)).reach == 4.0
    state = DragEngine(_Field(), torch.zeros(1, 8, 2), *near, config=DragConfig(reach=4.0)).run()
    assert state.reason == "reached" and state.step == 0  # already within reach: no step taken
    many = [[20 + 10 * i, 64] for i in range(6)], [[23 + 10 * i, 64] for i in range(6)]
    state = DragEngine(_Field(), torch.zeros(1, 8, 2), *many, config=DragConfig(reach_many=4.0)).run()
    assert state.reason == "reached" and state.step == 0
    few = DragEngine(_Field(), torch.zeros(1, 8, 2), *many, config=DragConfig(reach_few=6, reach_many=4.0, steps=1))
    assert few.reach == 1.0  # six points counted as few: the 1 px reach applies, not reach_many
    state = few.run()
    assert state.reason == "max_steps" and state.step == 1  # not within 1 px after its one step
    with pytest.raises(UsageError, match="steps must be >= 1"):  # a drag takes at least one step
        DragConfig(steps=0)


def test_the_stop_reasons_set_are_the_documented_ones():
    """Every `reason="..."` the drag code sets (engine and stage, read with ast) is in
    drag.record.STOP_REASONS, and every documented reason is set somewhere."""
    import ast
    from pathlib import Path

    from drag.record import STOP_REASONS

    set_in_code = set()
    for f in (Path(__file__).resolve().parents[1] / "drag").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "reason" and isinstance(node.value, ast.Constant):
                set_in_code.add(node.value.value)
            if isinstance(node, ast.Assign) and any(getattr(t, "attr", None) == "reason" for t in node.targets):
                assert isinstance(node.value, ast.Constant), (
                    f"{f.name}:{node.lineno} sets a reason this test cannot read"
                )
                set_in_code.add(node.value.value)
    assert set_in_code == set(STOP_REASONS)


# tiny real generators -------------------------------------------------------------------------
def test_drag_on_a_tiny_generator_lowers_the_motion_loss(monkeypatch):
    """With the handles held still (tracking off), motion supervision on the real architecture
    must drive its loss down: the optimisation of w[:, :6] works through the whole synthesis."""
    G = tiny_generator(res=128, dim=32)
    torch.manual_seed(0)
    w = G.mapping(torch.randn(1, G.z_dim))
    monkeypatch.setattr(ops, "track", lambda feat, refs, handles, r2, size: handles)
    losses = []
    DragEngine(G, w, [[60, 60]], [[70, 64]], config=DragConfig(steps=30)).run(lambda s: losses.append(s.loss))
    losses = [l for l in losses if l == l]
    assert min(losses[:30]) < 0.85 * losses[0] and losses[29] < 0.9 * losses[0]


def test_mask_keeps_features_outside_the_region():
    G = tiny_generator(res=128, dim=32)
    torch.manual_seed(0)
    w = G.mapping(torch.randn(1, G.z_dim))
    movable = np.zeros((128, 128), np.float32)
    movable[40:90, 40:90] = 1
    change = {}
    for name, mask in (("free", None), ("masked", movable)):
        eng = DragEngine(G, w, [[60, 60]], [[70, 64]], mask=mask, config=DragConfig(steps=25))
        state = eng.run()
        with torch.no_grad():
            f = G.synthesis.features(state.w, eng.block)
        change[name] = float((f - eng.feat0).abs().mean(1)[0].numpy()[movable == 0].mean())
    assert change["masked"] < 0.2 * change["free"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_follows_the_full_resolution_reference(seed):
    """Tolerance: handles within 1.5 px of the reference at every one of 12 steps (tracking is on
    whole pixels, so one pixel of disagreement can appear), and first-step gradients w.r.t. w
    pointing the same way (cosine > 0.9; the fast path samples the 128 map directly instead of
    resampling a resized copy)."""
    G = tiny_generator(res=256, dim=32)
    torch.manual_seed(seed)
    w = G.mapping(torch.randn(1, G.z_dim))
    pairs = ([[120, 120], [60, 150]], [[136, 128], [50, 140]])
    traj, grads = {}, {}
    for fast in (True, False):
        eng = DragEngine(G, w, *pairs, config=DragConfig(steps=12, loop="fast" if fast else "official"))
        s = eng.start()
        eng._loss(eng._features(eng._ws()), s.handles).backward()
        grads[fast] = eng.w_opt.grad.flatten().clone()
        run = DragEngine(G, w, *pairs, config=DragConfig(steps=12, loop="fast" if fast else "official"))
        hs = []
        run.run(lambda st, hs=hs: hs.append(st.handles.clone()))
        traj[fast] = torch.stack(hs)
    assert traj[True].shape == traj[False].shape
    assert float((traj[True] - traj[False]).norm(dim=-1).max()) <= 1.5
    assert float(F.cosine_similarity(grads[True], grads[False], dim=0)) > 0.9


# points ---------------------------------------------------------------------------------------
def test_points_parse_map_and_validate():
    assert parse_drag("10,20:30.5,40").handle == (10.0, 20.0)
    with pytest.raises(UsageError, match="X1,Y1:X2,Y2"):
        parse_drag("10,20-30,40")
    m = np.array([[0.5, 0, -10], [0, 0.5, 5], [0, 0, 1.0]])
    pts = to_aligned([parse_drag("40,20:60,30")], "photo", m, 64)
    np.testing.assert_allclose(pts[0], [[10, 15], [20, 20]])
    back = (pts.reshape(-1, 2) - m[:2, 2]) @ np.linalg.inv(m[:2, :2]).T
    np.testing.assert_allclose(back, [[40, 20], [60, 30]])  # photo -> aligned -> photo
    with pytest.raises(UsageError, match="outside the aligned face crop"):
        to_aligned([parse_drag("500,20:60,30")], "photo", m, 64)
    with pytest.raises(UsageError, match="under half an aligned pixel"):
        to_aligned([parse_drag("10,10:10,10")], "aligned", m, 64)
    mask = circle_mask(40, 20, 8, "photo", m, 64)  # photo circle -> radius 4 around (10, 15)
    assert mask[15, 10] == 1 and mask[15, 14] == 1 and mask[15, 15] == 0
