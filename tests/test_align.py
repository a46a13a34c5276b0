"""Align stage on real photos: dlib detection, FFHQ crop, exact inverse, inputs, errors."""

import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from align.align import align_face
from align.detect import find_faces
from align.ffhq import ffhq_quad, quad_to_matrix
from align.stage import run_align
from common.geometry import apply_matrix, warp_to_photo
from common.images import load_photo
from common.run import MARKER
from helpers import NO_SHARED, PHOTOS, PORTRAIT, faceless_photo, mirrored_portrait, run, two_faces_photo

# the packaged portrait and its mirror image always; the shared photos, as one case, where ../shared is present
SHARED_FACES = ("Tom_Cruise_avp_2014_4.jpg", "2008_001009.jpg", "2008_002506.jpg", "bald_guys.jpg")
FACE_PHOTOS = ["astronaut.jpg", "mirrored", "shared"]


def photo(name):
    path = PORTRAIT if name == PORTRAIT.name else PHOTOS / name
    if not path.exists():
        pytest.skip(NO_SHARED)
    return path


def face_photos(case, folder):
    """The photos of one FACE_PHOTOS case (the shared ones skip together when ../shared is absent)."""
    if case == "mirrored":
        return [mirrored_portrait(folder)]
    return [photo(n) for n in SHARED_FACES] if case == "shared" else [photo(case)]


def ffhq_quad_by_hand(lm: np.ndarray) -> np.ndarray:
    """The FFHQ script's quad (design.md), independent of align/ffhq.py."""
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, e2e = (eye_l + eye_r) / 2, eye_r - eye_l
    e2m = (lm[48] + lm[54]) / 2 - eye_avg
    x = e2e - np.flipud(e2m) * [-1, 1]
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + 0.1 * e2m
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


@pytest.mark.parametrize("case", FACE_PHOTOS)
def test_every_face_photo_aligns(case, tmp_path):
    for path in face_photos(case, tmp_path):
        check_alignment(path, tmp_path / path.stem)


def check_alignment(path, folder):
    res = run_align(path, folder / "run", size=256)
    d = folder / "run" / "align"
    assert sorted(p.name for p in d.iterdir()) == ["align.json", "aligned.png", "preview.png"]
    assert Image.open(d / "aligned.png").size == (256, 256)
    rec = json.loads((d / "align.json").read_text())
    assert rec["photo"]["sha256"] == load_photo(path).sha256, path.name
    assert len(rec["landmarks"]) == 68 and rec["size"] == 256 and rec["face_index"] == res.face_index
    # against the design's formulas, written out here: the FFHQ quad from the stored landmarks, and the
    # matrix sending its corners (pixel indices) to the crop's corners (-0.5 .. size - 0.5)
    quad = ffhq_quad_by_hand(np.array(rec["landmarks"]))
    np.testing.assert_allclose(rec["quad"], quad, atol=1e-6)
    corners = np.array([[0, 0], [0, 256], [256, 256], [256, 0]]) - 0.5
    np.testing.assert_allclose(apply_matrix(rec["matrix"], quad), corners, atol=1e-6)
    np.testing.assert_allclose(apply_matrix(rec["inverse"], corners), quad, atol=1e-6)
    assert sorted(p.name for p in folder.joinpath("run").iterdir()) == [MARKER, "align"]  # no temp folders left


def test_bald_guys_large_photo_many_faces(tmp_path):
    res = align_face(load_photo(photo("bald_guys.jpg")).rgb, size=256)
    assert len(res.faces) >= 20
    chosen = res.faces[res.face_index]
    assert chosen.size >= max(f.size for f in res.faces) * 0.8  # 'largest' favours big, confident faces


def test_no_face_is_exit_2_and_writes_nothing(tmp_path, capsys):
    code, _, err = run(["align", str(faceless_photo(tmp_path)), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "no face found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_two_faces_listed_and_face_1_picks_the_other(tmp_path, capsys):
    path = two_faces_photo(tmp_path)
    code, out, _ = run(["align", str(path), "--out", str(tmp_path / "r"), "--list-faces"], capsys)
    assert code == 0 and out.count("face ") == 2 and (tmp_path / "r" / "faces.png").exists()
    r0 = run_align(path, tmp_path / "a", size=128, face="largest")
    r1 = run_align(path, tmp_path / "b", size=128, face=1)
    assert r1.face_index == 1 and r0.face_index == 0
    assert r0.face.box != r1.face.box
    code, _, err = run(["align", str(path), "--out", str(tmp_path / "c"), "--face", "2"], capsys)
    assert code == 2 and "out of range" in err and not (tmp_path / "c").exists()


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_round_trip_through_the_inverse_reproduces_the_face():
    """Warping aligned.png back with the stored inverse gives the photo inside the quad (> 30 dB)."""
    ph = load_photo(PORTRAIT)
    res = align_face(ph.rgb, size=1024)
    crop_width = np.hypot(*(res.quad[3] - res.quad[0]))
    assert res.size >= crop_width  # the case the PSNR promise is about
    back = warp_to_photo(res.aligned, res.matrix, ph.size)
    centre = res.quad.mean(0)
    inner = (centre + (res.quad - centre) * 0.9).astype(np.int32)  # away from the resampling border
    mask = np.zeros(ph.rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, inner, 1)
    inside = mask.astype(bool)
    inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
    assert _psnr(np.clip(np.rint(back), 0, 255)[inside], ph.rgb[inside]) > 30


def test_landmarks_round_trip_and_warp_is_consistent():
    ph = load_photo(PORTRAIT)
    res = align_face(ph.rgb, size=512)
    lm = res.face.landmarks
    # the similarity written out by hand: along the quad's top and left edges, scaled to the crop
    q0, u, v = res.quad[0], res.quad[3] - res.quad[0], res.quad[1] - res.quad[0]
    side = np.hypot(*u)
    by_hand = np.stack([(lm - q0) @ u, (lm - q0) @ v], axis=1) / side**2 * 512 - 0.5
    np.testing.assert_allclose(res.to_aligned(lm), by_hand, atol=1e-6)
    # independent check of the warp: landmarks found again in the aligned image map back near the originals
    again = find_faces(res.aligned)[0].landmarks
    err = np.linalg.norm(res.to_photo(again) - lm, axis=1)
    assert err.mean() < 0.02 * res.face.size


@pytest.mark.parametrize("case", FACE_PHOTOS)
def test_eyes_and_mouth_land_where_ffhq_puts_them(case, tmp_path):
    """Tolerances (fractions of the output size S): eye midpoint within 2% of (0.5 S, 0.473 S),
    eye line within 5 degrees of horizontal, mouth centred within 4% and at 0.68-0.76 S.
    FFHQ's construction puts the eye midpoint at x = S/2, y = S/2 - 0.1 |e2m| S / (2 |x|)
    = 0.4722 S when the mouth distance sets the crop size; the mouth at <= 0.75 S."""
    S = 1024
    for path in face_photos(case, tmp_path):
        res = align_face(load_photo(path).rgb, size=S)
        lm = find_faces(res.aligned)[0].landmarks
        le, re_ = lm[36:42].mean(0), lm[42:48].mean(0)
        eye, mouth = (le + re_) / 2, (lm[48] + lm[54]) / 2
        assert abs(eye[0] - 0.5 * S) < 0.02 * S and abs(eye[1] - 0.4722 * S) < 0.02 * S, path.name
        assert abs(np.degrees(np.arctan2(re_[1] - le[1], re_[0] - le[0]))) < 5, path.name
        assert abs(mouth[0] - 0.5 * S) < 0.04 * S and 0.68 * S < mouth[1] < 0.76 * S, path.name


def test_quad_and_matrix_are_exact_on_synthetic_landmarks():
    lm = np.zeros((68, 2))
    lm[36:42] = [100, 100]
    lm[42:48] = [160, 100]
    lm[48], lm[54] = [110, 180], [150, 180]
    quad = ffhq_quad(lm)
    m = quad_to_matrix(quad, 256)
    corners = apply_matrix(m, quad) + 0.5  # FFHQ reads quad + 0.5 as continuous coordinates
    np.testing.assert_allclose(corners, [[0, 0], [0, 256], [256, 256], [256, 0]], atol=1e-9)
    eye = apply_matrix(m, [[130, 100]])[0]
    assert abs(eye[0] + 0.5 - 128) < 1e-9  # centred horizontally


def test_exif_rotated_copy_gives_the_same_face(tmp_path):
    ph = load_photo(PORTRAIT)
    stored = np.rot90(ph.rgb, k=1)  # turned a quarter left; EXIF 6 says "turn right to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif)
    rotated = load_photo(path)
    assert rotated.exif_transposed and rotated.size == ph.size
    np.testing.assert_array_equal(rotated.rgb, ph.rgb)
    a = align_face(ph.rgb, size=256).aligned
    b = align_face(rotated.rgb, size=256).aligned
    np.testing.assert_array_equal(a, b)


def _variants(src: Image.Image, tmp_path):
    rgb = src.convert("RGB")
    gray = rgb.convert("L")
    yield "gray.png", gray, {}
    rgba = rgb.copy()
    rgba.putalpha(Image.new("L", rgb.size, 200))
    yield "rgba.png", rgba, {}
    yield "gray16.png", Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), {}
    yield "cmyk.jpg", rgb.convert("CMYK"), {"quality": 95}
    yield "photo.webp", rgb, {"quality": 95}
    yield "photo.bmp", rgb, {}
    yield "photo.tiff", rgb, {}
    yield "palette.png", rgb.convert("P"), {}


def test_image_modes_and_formats_all_align(tmp_path):
    src = Image.open(PORTRAIT)
    for name, img, kw in _variants(src, tmp_path):
        path = tmp_path / name
        img.save(path, **kw)
        ph = load_photo(path)
        assert ph.rgb.dtype == np.uint8 and ph.rgb.shape == (src.height, src.width, 3), name
        assert (ph.alpha is not None) == (name == "rgba.png"), name
        if name == "rgba.png":
            assert int(ph.alpha.mean()) == 200
        assert len(find_faces(ph.rgb)) == 1, name


@pytest.mark.parametrize(
    "kind,message",
    [
        ("missing", "not found"),
        ("empty", "is empty"),
        ("text", "not an image"),
        ("truncated", "truncated"),
        ("huge", "limit"),
    ],
)
def test_bad_inputs_are_one_line_exit_2_and_write_nothing(kind, message, tmp_path, capsys, monkeypatch):
    path = tmp_path / "in.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, not a photo")
    elif kind == "truncated":
        data = PORTRAIT.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "huge":
        path.write_bytes(PORTRAIT.read_bytes())
        monkeypatch.setattr("common.images.MAX_PIXELS", 100_000)
    code, _, err = run(["align", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_small_face_warns(tmp_path, capsys):
    code, _, err = run(["align", str(PORTRAIT), "--out", str(tmp_path / "r"), "--size", "1024"], capsys)
    assert code == 0 and "warning" in err and "blurry" in err


def test_bad_size_is_refused(tmp_path, capsys):
    code, _, err = run(["align", str(PORTRAIT), "--out", str(tmp_path / "r"), "--size", "300"], capsys)
    assert code == 2 and "power of two" in err


def test_failure_while_writing_leaves_no_stage_folder(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("align.stage.draw_alignment", boom)
    with pytest.raises(RuntimeError):
        run_align(PORTRAIT, tmp_path / "run", size=128)
    assert os.listdir(tmp_path / "run") == [MARKER]  # the run folder's marker, no temp folder


def test_rerun_replaces_the_stage_folder_whole(tmp_path):
    path = two_faces_photo(tmp_path)
    run_align(path, tmp_path / "run", size=128, face=0)
    run_align(path, tmp_path / "run", size=128, face=1)
    rec = json.loads((tmp_path / "run" / "align" / "align.json").read_text())
    assert rec["face_index"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [MARKER, "align"]
