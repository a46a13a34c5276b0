"""Identity and fidelity metrics on real photos; the landmark protocol on synthetic sets."""

import cv2
import numpy as np
import pytest

from align.detect import find_faces
from align.identity import (
    SAME_PERSON,
    describe,
    face_region_mse,
    identity_distance,
    identity_report,
    yaw_ratio,
)
from common.errors import UsageError
from common.images import load_photo
from helpers import NO_SHARED, PHOTOS, PORTRAIT, faceless_photo
from inversion.stage import likely_causes
from pipeline.quality import landmark_pairs, mean_distance, select_landmarks, summarize


def photo(name):
    p = PHOTOS / name
    if not p.exists():
        pytest.skip(NO_SHARED)
    return load_photo(p).rgb


def test_identity_self_resized_and_other_person():
    tom = photo("Tom_Cruise_avp_2014_4.jpg")
    assert identity_distance(tom, tom) < 1e-6
    blurred = cv2.GaussianBlur(cv2.resize(tom, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA), (0, 0), 1.5)
    assert identity_distance(tom, blurred) < 0.3
    bald = photo("bald_guys.jpg")
    face = find_faces(bald)[0]
    l, t, r, b = (int(v) for v in face.box)
    pad = (r - l) // 2
    other = np.ascontiguousarray(bald[max(0, t - pad) : b + pad, max(0, l - pad) : r + pad])
    assert float(np.linalg.norm(describe(tom).vector - describe(other).vector)) > SAME_PERSON


def test_no_face_is_a_clear_message(tmp_path):
    faceless = load_photo(faceless_photo(tmp_path)).rgb
    with pytest.raises(UsageError, match="no face found"):
        describe(faceless)
    rep = identity_report(load_photo(PORTRAIT).rgb, faceless)
    assert rep["distance"] is None and "no face found" in rep["note"]


def test_face_region_mse_ignores_the_background():
    face = load_photo(PORTRAIT).rgb
    lm = describe(face).landmarks
    other = face.copy()
    other[:50] = 0  # change only the top strip (background/hair, outside the landmarks)
    assert face_region_mse(face, other, lm) == 0.0
    other[int(lm[30][1]), int(lm[30][0])] = 255 - other[int(lm[30][1]), int(lm[30][0])]  # the nose tip
    assert face_region_mse(face, other, lm) > 0


def test_likely_causes_and_yaw():
    frontal = np.zeros((68, 2))
    frontal[0], frontal[16], frontal[30] = [0, 50], [100, 50], [50, 60]
    profile = frontal.copy()
    profile[30] = [90, 60]
    assert yaw_ratio(frontal) > 0.95 and yaw_ratio(profile) < 0.2
    causes = likely_causes(100, 512, profile, 50, False)
    assert any("small" in c for c in causes) and any("turned" in c for c in causes)
    assert any("tuning steps" in c for c in causes)
    assert "no obvious cause" in likely_causes(600, 512, frontal, 350, True)[0]


def test_landmark_protocol_functions():
    a = np.arange(136, dtype=float).reshape(68, 2)
    b = a + [3.0, 4.0]  # every target 5 px away
    assert select_landmarks(68).tolist() == list(range(68))
    five = select_landmarks(5, seed=3)
    assert len(set(five.tolist())) == 5 and np.array_equal(five, select_landmarks(5, seed=3))
    pairs = landmark_pairs(a, b, 5, seed=3)
    assert pairs.shape == (5, 2, 2)
    np.testing.assert_array_equal(pairs[:, 0], a[five])
    assert mean_distance(pairs[:, 0], pairs[:, 1]) == pytest.approx(5.0)
    assert mean_distance(b, b) == 0.0
    with pytest.raises(ValueError):
        select_landmarks(0)
    assert summarize([1.0, 3.0, None]) == {"n": 2, "mean": 2.0, "std": 1.0}


def test_quality_benchmark_says_when_weights_are_missing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
    res = subprocess.run(
        [sys.executable, str(script), "--home", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quality benchmark not run: missing weights ffhq-512")


def test_a_low_resolution_or_random_generator_is_named_before_the_step_counts():
    frontal = np.zeros((68, 2))
    frontal[0], frontal[16], frontal[30] = [0, 50], [100, 50], [50, 60]
    small = likely_causes(20, 64, frontal, 50, False, "tiny.safetensors")
    assert "only 64 px" in small[0] and any("tuning steps" in c for c in small[1:])
    assert "random weights" in likely_causes(20, 64, frontal, 3, False, "tiny-random")[0]
    assert not any("px (a test" in c for c in likely_causes(100, 512, frontal, 50, False, "ffhq-512"))


def test_a_drag_that_needed_no_step_says_so():
    from pathlib import Path

    from pipeline.summary import EditSummary

    done = EditSummary(Path("o.jpg"), Path("run"), distances_photo=[10.1], stop_reason="reached", drag_steps=0)
    line = next(ln for ln in done.lines() if "distance to targets" in ln)
    assert "0 steps: the handles were already within the stop distance" in line and "reached" not in line
    moved = EditSummary(Path("o.jpg"), Path("run"), distances_photo=[0.8], stop_reason="reached", drag_steps=12)
    assert "drag stopped (reached) after 12 steps" in "\n".join(moved.lines())
