"""The drag stage on disk and its command line, on a real photo with a tiny generator."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from helpers import PORTRAIT, cli, mirrored_portrait, tiny_generator

PHOTO = PORTRAIT


@pytest.fixture(scope="module")
def inverted(tmp_path_factory):
    """RUN_DIR with align (128 px) and invert (tiny generator, few steps) done once for the module."""
    from align.stage import run_align
    from inversion.config import InversionConfig, ProjectionConfig, TuningConfig
    from inversion.perceptual import Perceptual
    from inversion.stage import run_invert

    base = tmp_path_factory.mktemp("inverted")
    run_align(PHOTO, base / "run", size=128)
    lp = {n: Perceptual(n, random_backbone=True) for n in ("alex", "vgg")}
    cfg = InversionConfig(
        projection=ProjectionConfig(steps=5, w_avg_samples=100), tuning=TuningConfig(steps=3, lpips_threshold=0.0)
    )
    run_invert(
        base / "run", tiny_generator(res=128, dim=32), "tiny", "sha", cfg, lambda n, r: lp[n], None, progress=False
    )
    return base / "run"


@pytest.fixture
def run_dir(inverted, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(inverted, dst)
    return dst


def mouth_corners(run_dir):
    lm = json.loads((run_dir / "align" / "align.json").read_text())["landmarks"]
    return lm[48], lm[54]


def test_drag_in_photo_coordinates_writes_every_file(run_dir, capsys):
    (lx, ly), (rx, ry) = mouth_corners(run_dir)
    drags = [f"{rx},{ry}:{rx + 20},{ry - 20}", f"{lx},{ly}:{lx - 15},{ly - 10}"]
    code, out, err = cli(
        capsys, "drag", str(run_dir), "--drag", drags[0], "--drag", drags[1], "--steps", "8", "--animate", "steps.gif"
    )
    assert code == 0, err
    d = run_dir / "drag"
    assert sorted(p.name for p in d.iterdir()) == [
        "drag.json",
        "edited.png",
        "preview.png",
        "steps.gif",
        "w_edited.safetensors",
    ]
    rec = json.loads((d / "drag.json").read_text())
    assert rec["stop_reason"] in ("max_steps", "stalled", "reached") and rec["steps"] <= 8
    np.testing.assert_allclose(rec["points"][0]["photo"]["handle"], [rx, ry], atol=0.01)
    np.testing.assert_allclose(rec["points"][1]["photo"]["target"], [lx - 15, ly - 10], atol=0.01)
    for p in rec["points"]:
        a = p["aligned"]
        assert a["distance"] == pytest.approx(np.linalg.norm(np.subtract(a["final"], a["target"])), abs=1e-3)
    assert Image.open(d / "edited.png").size == (128, 128)
    gif = Image.open(d / "steps.gif")
    assert gif.n_frames >= 2


def test_drag_with_masks(run_dir, capsys, tmp_path):
    (lx, ly), _ = mouth_corners(run_dir)
    code, _, err = cli(
        capsys,
        "drag",
        str(run_dir),
        "--drag",
        f"{lx},{ly}:{lx - 10},{ly}",
        "--steps",
        "3",
        "--mask-circle",
        f"{lx},{ly},60",
    )
    assert code == 0, err
    assert json.loads((run_dir / "drag" / "drag.json").read_text())["mask"] is True
    w, h = Image.open(PHOTO).size
    mask = np.zeros((h, w), np.uint8)
    mask[int(ly) - 50 : int(ly) + 50, int(lx) - 50 : int(lx) + 50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, _, err = cli(
        capsys,
        "drag",
        str(run_dir),
        "--drag",
        f"{lx},{ly}:{lx - 10},{ly}",
        "--steps",
        "3",
        "--mask",
        str(tmp_path / "mask.png"),
    )
    assert code == 0, err
    assert (run_dir / "drag" / "mask.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--drag", "1,2,3"], "X1,Y1:X2,Y2"),
        (["--drag", "5000,5000:5010,5000"], "outside the aligned face crop"),
        (["--drag", "225,125:225,125"], "under half an aligned pixel"),
        (["--drag", "225,125:230,125", "--mask-circle", "1,2"], "X,Y,R"),
        (["--drag", "225,125:230,125", "--mask-circle", "225,125,10", "--mask", "m.png"], "not both"),
        (["--drag", "225,125:230,125", "--mask", "missing.png"], "not found"),
        (["--drag", "225,125:230,125", "--animate", "steps.avi"], ".gif or .mp4"),
    ],
)
def test_bad_drag_input_is_one_line_exit_2(run_dir, capsys, args, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "drag", str(run_dir), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (run_dir / "drag").exists()


def test_wrong_size_mask_is_refused(run_dir, capsys, tmp_path):
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "small.png")
    code, _, err = cli(capsys, "drag", str(run_dir), "--drag", "225,125:230,125", "--mask", str(tmp_path / "small.png"))
    assert code == 2 and "must be" in err


def test_drag_refuses_a_stale_inversion(run_dir, capsys, tmp_path):
    from align.stage import run_align

    run_align(mirrored_portrait(tmp_path), run_dir, size=128)
    code, _, err = cli(capsys, "drag", str(run_dir), "--drag", "290,125:295,125", "--steps", "2")
    assert code == 2 and "another aligned image" in err


def test_drag_without_invert_says_what_to_run(tmp_path, capsys):
    from align.stage import run_align

    run_align(PHOTO, tmp_path / "r", size=128)
    code, _, err = cli(capsys, "drag", str(tmp_path / "r"), "--drag", "225,125:230,125")
    assert code == 2 and "photodrag invert" in err


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_animation_writers(tmp_path, suffix):
    import cv2

    from drag.draw import write_animation

    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(4)]
    path = tmp_path / f"steps{suffix}"
    write_animation(path, frames)
    if suffix == ".gif":
        assert Image.open(path).n_frames == 4
    else:
        cap = cv2.VideoCapture(str(path))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left
