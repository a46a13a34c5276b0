"""`photodrag doctor`: the install's checks, and the end-to-end proof on random weights."""

import json

import numpy as np
import torch
from PIL import Image

from helpers import PORTRAIT, run
from weights.registry import REGISTRY


def test_doctor_proves_the_pipeline_and_lists_missing_weights_without_touching_them(home, tmp_path, capsys):
    out = tmp_path / "doctor"
    code, stdout, err = run(["--quiet", "--device", "cpu", "doctor", "--out", str(out), "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["ok"] is True
    checks = {r["name"]: r for r in report["checks"]}
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    assert checks["torch"]["detail"] == f"{torch.__version__}, {build}"
    assert checks["device"]["detail"].startswith("cpu")
    assert checks["dlib-landmarks-68"]["status"] == "present"
    for name in REGISTRY:  # every registry file is listed, with where it goes and how to fetch it
        assert name in checks and checks[name]["path"]
    assert checks["ffhq-512"]["status"] == "missing" and checks["ffhq-512"]["fix"] == "photodrag weights fetch ffhq-512"
    assert checks["ffhq-512"]["path"] == str(home / "weights" / "stylegan2-ffhq-512x512.pkl")
    assert {"ffhq-512", "lpips-alex", "lpips-vgg16"} <= set(report["missing_weights"])
    assert {"web extra", "ray extra", "home", "cache", "dlib"} <= set(checks)
    proof = report["proof"]
    assert proof["folder"] == str(out) and proof["photo"] == str(PORTRAIT) and "random weights" in proof["note"]
    result = np.asarray(Image.open(proof["result"]))
    assert result.shape[:2] == np.asarray(Image.open(PORTRAIT)).shape[:2]
    assert all(Image.open(p).size[0] > 0 for p in proof["previews"]) and len(proof["previews"]) == 4
    assert proof["drag_steps"] >= 1
    assert not (home / "weights").exists()  # nothing fetched or written to the weights folder


def test_doctor_table_names_the_folder_and_says_the_result_is_noise(home, tmp_path, capsys):
    code, stdout, err = run(["--quiet", "--device", "cpu", "doctor", "--out", str(tmp_path / "d")], capsys)
    assert code == 0, err
    assert "photodrag weights fetch ffhq-512" in stdout and "about 364 MB" in stdout
    assert f"result: {tmp_path / 'd' / 'edited.jpg'}" in stdout
    assert "the result is noise" in stdout and stdout.strip().endswith("the install works")
    assert not (home / "weights").exists()
