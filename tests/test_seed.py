"""DragGAN's own workflow: the zoo in the registry, trust-on-first-use downloads, and seed -> drag ->
edit --recipe on tiny generators of the real architecture in the stylegan2-ada, NGC and TF layouts."""

import json

import numpy as np
import pytest
import torch
from draggan_loop import official_drag
from safetensors.torch import load_file

from common.errors import DownloadError, UsageError
from drag.engine import DragConfig, DragEngine
from drag.frame import DragFrame
from helpers import run, tiny_generator, write_nvidia_pickle
from inversion.seed import seed_latent
from layouts import write_ngc_pickle, write_tf_pickle
from pipeline.recipe import parse_recipe
from weights.checkpoint import load_generator
from weights.networks import Generator
from weights.registry import ADA, GENERATOR, NGC, REGISTRY, TENSORFLOW
from weights.sizes import generator_floats, pickle_mb
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


def test_expected_sizes_come_from_the_architecture():
    """Each generator's expected size (no publisher gives one) is G + G_ema + D in float32 for its
    init kwargs; the count of G's tensors is the real architecture's (weights.networks.Generator,
    built on the meta device: nothing allocated), so ffhq-256's half-width channels weigh less."""
    for name, e in REGISTRY.items():
        if e.kind != GENERATOR:
            continue
        with torch.device("meta"):
            G = Generator(**e.init_kwargs)
        assert generator_floats(e.init_kwargs) == sum(v.numel() for v in G.state_dict().values()), name
        assert e.approx_mb == pickle_mb(e.init_kwargs) and e.description.endswith(f"about {e.approx_mb} MB"), name
    assert (REGISTRY["ffhq-256"].approx_mb, REGISTRY["ffhq-512"].approx_mb, REGISTRY["ffhq-1024"].approx_mb) == (
        296,
        364,
        381,
    )


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
        # the options that do apply to a seed recipe are honoured, not ignored: the mask, steps, --no-wait
        more = ["--mask-circle", "12,12,5", "--steps", "2", "--no-wait", "--run-dir", str(tmp_path / "masked")]
        code, _, err = run(
            ["--quiet", "--device", "cpu", "edit", "--recipe", str(run_dir / "recipe.json"), "-o", str(out), *more],
            capsys,
        )
        assert code == 0, err
        again = json.loads((tmp_path / "masked" / "recipe.json").read_text())
        assert again["mask"] == {"circle": [12.0, 12.0, 5.0]} and again["drag"]["steps"] == 2
        assert json.loads((tmp_path / "masked" / "drag" / "drag.json").read_text())["mask"] is True
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
        *(
            ({"seed": {"seed": 1}, key: section, "drags": [{"handle": [1, 1], "target": [2, 2]}]}, f'"{key}" does not')
            for key, section in (
                ("align", {"face": "largest"}),
                ("invert", {"w_plus": True}),
                ("composite", {"blend": "generator"}),
            )
        ),
    ],
)
def test_bad_seed_recipes_are_one_line(data, message):
    with pytest.raises(UsageError, match=message):
        parse_recipe(data)
    assert parse_recipe({"seed": {"seed": 2}, "drags": [{"handle": [1, 1], "target": [2, 2]}]}).seed == {
        "seed": 2,
        "psi": 1.0,
    }


@pytest.mark.parametrize("latent", ["w+", "w"])
def test_the_drag_engines_reference_path_follows_draggans_loop(latent, tmp_path):
    """From the same seed, psi and points (an NGC-layout file at 256 px, where the b128 map is resized
    to the image as DragGAN does), the engine's official loop (DragConfig.loop "official") takes DragGAN's official
    steps (tests/draggan_loop.py) in W+ and in W: the same handles at every step and the same latent.
    The loop tracks by L1 (`track_ord=1`), as the paper writes it and photodrag does
    (drag/features.track); DragGAN's code uses L2, and on a random-weight generator's noisy features
    the two norms can pick handles pixels apart."""
    G = load_generator(write_ngc_pickle(tmp_path / "ngc.pkl", tiny_generator(res=256, dim=32)), "cpu")
    w = seed_latent(G, 5, 0.7)
    handles, targets, steps = [[120, 120], [60, 150]], [[144, 132], [44, 136]], 6
    eng = DragEngine(G, w, handles, targets, config=DragConfig(steps=steps, latent=latent, loop="official"))
    state, trail = eng.start(), []
    while len(trail) < steps:
        state = eng.step(state)
        trail.append(state.handles.clone())
    official, w_official, _ = official_drag(G, w, handles, targets, steps, latent, track_ord=1)
    assert torch.equal(torch.stack(trail), official)
    assert not torch.equal(official[-1], torch.tensor(handles, dtype=torch.float32))  # the handles moved
    assert torch.allclose(state.w, w_official, atol=1e-6) and not torch.equal(state.w, w)
    if latent == "w":  # one vector shared by the first six layers, the rest at the seed's w
        assert torch.equal(state.w[:, :6], state.w[:, :1].expand(-1, 6, -1))
        assert torch.equal(state.w[:, 6:], w[:, 6:])
    else:
        assert not torch.equal(state.w[:, 0], state.w[:, 5])


@pytest.mark.parametrize("res, loop", [(128, "fast"), (256, "official")])
@pytest.mark.parametrize("layout", list(WRITERS))
def test_seed_then_drag_on_the_command_line_is_draggans_loop(layout, res, loop, home, tmp_path, capsys):
    """`photodrag seed --model FILE --seed 3 --trunc 0.7` then `photodrag drag RUN --drag ... [--loop
    official]` (W+), from a file in each of the three layouts, against DragGAN's loop
    (tests/draggan_loop.py) from the same seed, psi and points: the latent drag/w_edited.safetensors
    holds and the final handles drag.json records (it keeps no per-step trail) are the official ones.

    By default the command line drags on the engine's fast path (the synthesis stops at b128, features
    are sampled from the 128 px map).  At 128 px that map is the image-size map, so the fast path's
    sampling and the official resize + grid_sample(align_corners=True) read the same values: the
    comparison is to float precision, not a tolerance.  Above 128 px the fast path drifts from the
    official loop (a bilinear sample of the resized map is not a bilinear sample of the map: on a
    random-weight generator's noisy features the tracked handles part within a few steps), so at
    256 px the test runs `--loop official`, DragGAN's own loop, and holds it to the same float
    precision.  Tracking is by L1 (`track_ord=1`), as the paper and photodrag do; DragGAN's code uses L2."""
    model = WRITERS[layout](tmp_path / f"{layout}.pkl", tiny_generator(res=res, dim=32))
    run_dir, steps, k = tmp_path / "run", 8, res // 128
    handles, targets = [[60 * k, 60 * k], [30 * k, 75 * k]], [[72 * k, 66 * k], [22 * k, 68 * k]]
    code, _, err = run(
        ["--device", "cpu", "seed", "--model", str(model), "--seed", "3", "--trunc", "0.7", "--out", str(run_dir)],
        capsys,
    )
    assert code == 0, err
    drags = [f"--drag={h[0]},{h[1]}:{t[0]},{t[1]}" for h, t in zip(handles, targets)]
    argv = ["--quiet", "--device", "cpu", "drag", str(run_dir), *drags, "--steps", str(steps), "--loop", loop]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    record = json.loads((run_dir / "drag" / "drag.json").read_text())
    assert (record["steps"], record["stop_reason"]) == (steps, "max_steps")
    final = torch.tensor([p["aligned"]["final"] for p in record["points"]], dtype=torch.float32)
    w_cli = load_file(str(run_dir / "drag" / "w_edited.safetensors"))["w"]
    recipe_drag = json.loads((run_dir / "recipe.json").read_text())["drag"]
    assert recipe_drag.get("loop", "fast") == loop  # edit --recipe replays the same loop

    G = load_generator(model, "cpu")
    w_seed = seed_latent(G, 3, 0.7)
    assert torch.equal(load_file(str(run_dir / "invert" / "pivot.safetensors"))["w"], w_seed)
    _, w_official, final_official = official_drag(G, w_seed, handles, targets, steps, "w+", track_ord=1)
    assert not torch.equal(final_official, torch.tensor(handles, dtype=torch.float32))  # the handles moved
    assert torch.equal(final, final_official)
    assert torch.allclose(w_cli, w_official, atol=1e-6) and not torch.equal(w_cli, w_seed)


SEED_REFUSALS = [
    ["--face", "0"],
    ["--min-face", "40"],
    ["--blend", "generator"],
    ["--preview"],
    ["--w-plus"],
    ["--projection-steps", "5"],
    ["--tuning-steps", "5"],
    ["--lpips-threshold", "0.1"],
    ["--projection-lpips", "alex"],
    ["--keep-projection-noise"],
    ["--seed", "1"],
    ["--from", "drag"],
    ["--jpeg-quality", "90"],
    ["--overwrite-input"],
    ["--cluster", "ray"],
    ["--address", "127.0.0.1:6379"],
    ["--workers", "2"],
]


@pytest.mark.parametrize("flag", SEED_REFUSALS, ids=lambda f: f[0])
def test_edit_of_a_seed_recipe_refuses_the_options_it_would_ignore(flag, home, tmp_path, capsys):
    """A photo's options (which face, how to blend, the inversion's, the output's) mean nothing for a
    generated start: each is refused in one line naming it, before anything is written."""
    recipe = tmp_path / "seed.json"
    drags = [{"handle": [10, 12], "target": [14, 15]}]
    recipe.write_text(json.dumps({"seed": {"seed": 3, "psi": 0.7}, "model": "ffhq-512", "drags": drags}))
    before = sorted(tmp_path.rglob("*"))
    out, run_dir = tmp_path / "out.png", tmp_path / "run"
    argv = ["--quiet", "--device", "cpu", "edit", "--recipe", str(recipe), "-o", str(out), "--run-dir", str(run_dir)]
    code, _, err = run([*argv, *flag], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{flag[0]} does not apply: a seed recipe starts from a generated picture" in err
    assert sorted(tmp_path.rglob("*")) == before and not out.exists() and not run_dir.exists()
