"""DragGAN's own workflow: the zoo in the registry, trust-on-first-use downloads, and seed -> drag ->
edit --recipe on tiny generators of the real architecture in the stylegan2-ada, NGC and TF layouts."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from common.errors import DownloadError, UsageError
from drag.frame import DragFrame
from helpers import run, tiny_generator, write_nvidia_pickle
from layouts import write_ngc_pickle, write_tf_pickle
from pipeline.recipe import parse_recipe
from weights.networks import Generator
from weights.registry import ADA, GENERATOR, NGC, REGISTRY, TENSORFLOW
from weights.store import WeightStore

# XingangPan/DragGAN scripts/download_models.json: url -> the file name DragGAN saves it as
DRAGGAN_MODELS = {
    "lions-512": ("https://storage.googleapis.com/self-distilled-stylegan/lions_512_pytorch.pkl", ADA, 512),
    "dogs-1024": ("https://storage.googleapis.com/self-distilled-stylegan/dogs_1024_pytorch.pkl", ADA, 1024),
    "horses-256": ("https://storage.googleapis.com/self-distilled-stylegan/horses_256_pytorch.pkl", ADA, 256),
    "elephants-512": ("https://storage.googleapis.com/self-distilled-stylegan/elephants_512_pytorch.pkl", ADA, 512),
    "ffhq-512": (
        "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/stylegan2-ffhq-512x512.pkl",
        NGC,
        512,
    ),
    "afhqcat-512": (
        "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/stylegan2-afhqcat-512x512.pkl",
        NGC,
        512,
    ),
    "car-config-f": (
        "http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/stylegan2-car-config-f.pkl",
        TENSORFLOW,
        512,
    ),
    "cat-config-f": (
        "http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/stylegan2-cat-config-f.pkl",
        TENSORFLOW,
        256,
    ),
}
WRITERS = {"stylegan2-ada": write_nvidia_pickle, "ngc": write_ngc_pickle, "tensorflow": write_tf_pickle}


def test_draggan_zoo_is_in_the_registry_and_listed(home, capsys):
    for name, (url, layout, res) in DRAGGAN_MODELS.items():
        e = REGISTRY[name]
        assert (e.kind, e.url, e.layout, e.resolution) == (GENERATOR, url, layout, res), name
        assert e.licence and e.approx_mb and e.subject and e.sha256 is None
    code, out, _ = run(["weights", "list"], capsys)
    assert code == 0
    blocks = out.splitlines()
    for name, (_, layout, _) in DRAGGAN_MODELS.items():
        head = next(i for i, line in enumerate(blocks) if line.startswith(name + " "))
        block = "\n".join(blocks[head : head + 7])
        assert f"layout: {layout}" in block and " MB " in block
        assert "recorded on first download" in block
    assert "512x384 pictures letterboxed" in out  # LSUN car: the square frame it is drawn in, said once


def _small_512(seed: int) -> Generator:
    """A 512 px generator with w_dim 512 (what the 512 px entries need) and few channels."""
    G = Generator(
        z_dim=512,
        w_dim=512,
        img_resolution=512,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=2048, channel_max=4),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return G.eval().requires_grad_(False)


def test_first_download_records_the_hash_and_later_downloads_are_checked(home, tmp_path):
    source = write_nvidia_pickle(tmp_path / "lions.pkl", _small_512(0))
    store = WeightStore(home, progress=False)
    dest = store.fetch("lions-512", url=source.as_uri())
    st = store.status("lions-512")
    assert st.sha256 and st.recorded_size == source.stat().st_size == dest.stat().st_size
    assert store.expected("lions-512") == (st.recorded_size, st.sha256)
    dest.unlink()
    write_nvidia_pickle(source, _small_512(1))  # the "same" URL now serves another file
    with pytest.raises(DownloadError, match=f"expected {st.recorded_size}|expected {st.sha256}"):
        store.fetch("lions-512", url=source.as_uri())
    assert not dest.exists()
    assert store.status("lions-512").sha256 == st.sha256  # the first hash stays the reference


@pytest.mark.parametrize("layout", list(WRITERS))
def test_seed_drag_and_recipe_replay(layout, home, tmp_path, capsys):
    model = WRITERS[layout](tmp_path / f"{layout}.pkl", tiny_generator(res=32))
    run_dir = tmp_path / "run"
    code, _, err = run(
        ["--device", "cpu", "seed", "--model", str(model), "--seed", "3", "--trunc", "0.7", "--out", str(run_dir)],
        capsys,
    )
    assert code == 0, err
    record = json.loads((run_dir / "invert" / "invert.json").read_text())
    assert record["start"]["kind"] == "seed" and (record["start"]["seed"], record["start"]["psi"]) == (3, 0.7)
    code, _, err = run(
        ["generate", "--model", str(model), "--seed", "3", "--trunc", "0.7", "-o", str(tmp_path / "g.png")], capsys
    )
    assert (tmp_path / "g.png").read_bytes() == (run_dir / "invert" / "reconstruction.png").read_bytes()

    drag = ["--quiet", "--device", "cpu", "drag", str(run_dir), "--drag", "10,12:14,15", "--mask-circle", "12,12,9"]
    code, _, err = run([*drag, "--steps", "4"], capsys)
    assert code == 0, err
    w0 = load_file(str(run_dir / "invert" / "pivot.safetensors"))["w"]
    w1 = load_file(str(run_dir / "drag" / "w_edited.safetensors"))["w"]
    assert w1.shape == w0.shape and not np.allclose(w1.numpy(), w0.numpy())
    assert json.loads((run_dir / "recipe.json").read_text())["seed"] == {"seed": 3, "psi": 0.7}

    out = tmp_path / "replayed.png"
    code, _, err = run(
        [
            "--quiet",
            "--device",
            "cpu",
            "edit",
            "--recipe",
            str(run_dir / "recipe.json"),
            "-o",
            str(out),
            "--run-dir",
            str(tmp_path / "again"),
        ],
        capsys,
    )
    assert code == 0, err
    assert out.read_bytes() == (run_dir / "drag" / "edited.png").read_bytes()
    w2 = load_file(str(tmp_path / "again" / "drag" / "w_edited.safetensors"))["w"]
    assert np.array_equal(w1.numpy(), w2.numpy())

    if layout == "stylegan2-ada":  # the refusals, once
        code, _, err = run(["composite", str(run_dir), "-o", str(tmp_path / "x.jpg")], capsys)
        assert code == 2 and "no photo to composite" in err and len(err.strip().splitlines()) == 1
        code, _, err = run(["drag", str(run_dir), "--preset", "smile=0.5"], capsys)
        assert code == 2 and "presets need a face" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x.jpg").exists()


def test_presets_are_refused_for_a_model_that_draws_no_faces(tmp_path):
    frame = DragFrame(
        np.eye(3),
        np.eye(3),
        512,
        (512, 512),
        None,
        ("invert", "reconstruction.png"),
        seed={"kind": "seed", "seed": 1, "subject": "lions"},
        model="lions-512",
    )
    with pytest.raises(UsageError, match="lions-512 draws lions"):
        frame.check_presets({"smile": 0.5}, tmp_path)
    frame.check_presets({}, tmp_path)  # pixel drags need nothing
    assert frame.no_face == "lions-512 draws lions, not faces"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"seed": {"seed": 1}, "photo": "a.jpg", "drags": [{"handle": [1, 1], "target": [2, 2]}]}, "either"),
        ({"seed": {"seed": -1}, "drags": [{"handle": [1, 1], "target": [2, 2]}]}, "seed.seed"),
        ({"seed": {"psi": 0.5}, "drags": [{"handle": [1, 1], "target": [2, 2]}]}, "seed.seed"),
        ({"seed": {"seed": 1, "trunc": 1}, "drags": [{"handle": [1, 1], "target": [2, 2]}]}, "unknown"),
    ],
)
def test_bad_seed_recipes_are_one_line(data, message):
    with pytest.raises(UsageError, match=message):
        parse_recipe(data)
    assert parse_recipe({"seed": {"seed": 2}, "drags": [{"handle": [1, 1], "target": [2, 2]}]}).seed == {
        "seed": 2,
        "psi": 1.0,
    }


def official_drag(G, w_start, handles, targets, steps, latent, lr=2e-3, r1=3, r2=12, track_ord=2):
    """DragGAN's GUI loop (viz/renderer.py), written from its formulation for this test: (row, col)
    points; W+ optimises w[:, :6] of the full code, W one vector (w[:, 0]) repeated into those six;
    the b128 features resized to the image size; tracking by the L2 norm (`track_ord`) in the r2 window;
    motion supervision by grid_sample at q + d over the r1 disc; Adam.  Returns each step's handles (x, y)
    and the final latent."""
    import torch.nn.functional as F

    h = G.img_resolution
    w0 = w_start.detach().clone()
    w = (w0.clone() if latent == "w+" else w0[:, 0].clone()).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    points = [[float(y), float(x)] for x, y in handles]
    goals = [[float(y), float(x)] for x, y in targets]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij")
    refs, trail = None, []
    for _ in range(steps):
        ws = w.unsqueeze(1).repeat(1, 6, 1) if w.dim() == 2 else w
        ws = torch.cat([ws[:, :6], w0[:, 6:]], dim=1)
        _, feats = G.synthesis(ws, noise_mode="const", return_features=["b128"])
        feat = F.interpolate(feats["b128"].float(), [h, h], mode="bilinear")
        if refs is None:
            refs = [feat.detach()[:, :, round(p[0]), round(p[1])] for p in points]
        rad = round(r2 / 512 * h)
        with torch.no_grad():
            for j, p in enumerate(points):
                up, left = int(max(p[0] - rad, 0)), int(max(p[1] - rad, 0))
                down, right = int(min(p[0] + rad + 1, h)), int(min(p[1] + rad + 1, h))
                patch = feat[:, :, up:down, left:right] - refs[j].reshape(1, -1, 1, 1)
                dist = torch.linalg.vector_norm(patch, ord=track_ord, dim=1)
                idx = int(torch.argmin(dist.view(-1)))
                points[j] = [idx // (right - left) + up, idx % (right - left) + left]
        trail.append([[p[1], p[0]] for p in points])
        loss = 0
        for p, t in zip(points, goals):
            direction = torch.tensor([t[1] - p[1], t[0] - p[0]])
            if torch.linalg.norm(direction) > 1:
                inside = ((xx - p[1]) ** 2 + (yy - p[0]) ** 2) ** 0.5 < round(r1 / 512 * h)
                rows, cols = torch.where(inside)
                direction = direction / (torch.linalg.norm(direction) + 1e-7)
                grid = torch.stack(
                    [(cols + direction[0]) / (h - 1) * 2 - 1, (rows + direction[1]) / (h - 1) * 2 - 1], -1
                )
                moved = F.grid_sample(feat, grid[None, None], align_corners=True).squeeze(2)
                loss = loss + F.l1_loss(feat[:, :, rows, cols].detach(), moved)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ws = w.unsqueeze(1).repeat(1, 6, 1) if w.dim() == 2 else w
    return torch.tensor(trail, dtype=torch.float32), torch.cat([ws[:, :6], w0[:, 6:]], dim=1).detach()


@pytest.mark.parametrize("latent", ["w+", "w"])
def test_a_seed_runs_drag_follows_draggans_loop(latent, tmp_path):
    """From the same seed, psi and points (an NGC-layout file), the drag (its reference path, the
    official formulation) takes DragGAN's official steps in W+ and in W: the same handles at every
    step and the same latent.  The loop tracks by L1 here, as the paper writes it and the engine does
    (drag/features.track); DragGAN's code uses L2, and on a random-weight generator's noisy features
    the two norms can pick handles pixels apart.  The fast path's agreement with the reference path
    is tests/test_drag.py's test_fast_path_follows_the_full_resolution_reference."""
    from drag.engine import DragConfig, DragEngine
    from inversion.seed import seed_latent
    from weights.checkpoint import load_generator

    G = load_generator(write_ngc_pickle(tmp_path / "ngc.pkl", tiny_generator(res=128, dim=32)), "cpu")
    w = seed_latent(G, 5, 0.7)
    handles, targets, steps = [[60, 60], [30, 75]], [[72, 66], [22, 68]], 6
    eng = DragEngine(G, w, handles, targets, config=DragConfig(steps=steps, latent=latent), fast=False)
    state, trail = eng.start(), []
    while len(trail) < steps:
        state = eng.step(state)
        trail.append(state.handles.clone())
    official, w_official = official_drag(G, w, handles, targets, steps, latent, track_ord=1)
    assert torch.equal(torch.stack(trail), official)
    assert torch.allclose(state.w, w_official, atol=1e-6) and not torch.equal(state.w, w)
    if latent == "w":  # one vector shared by the first six layers, the rest at the seed's w
        assert torch.equal(state.w[:, :6], state.w[:, :1].expand(-1, 6, -1))
        assert torch.equal(state.w[:, 6:], w[:, 6:])
    else:
        assert not torch.equal(state.w[:, 0], state.w[:, 5])
