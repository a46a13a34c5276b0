import json
import os
import sys
from pathlib import Path

import pytest

# as run_pipeline.main does: MKL's alignment-dependent GEMM paths would make repeated runs differ in
# the last bit (tests/test_inversion.py's determinism test saw it); set before any MKL call
os.environ.setdefault("MKL_CBWR", "AUTO")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import MOUTH_RIGHT, TARGET, tiny_generator  # noqa: E402
from weights.checkpoint import save_generator  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty PHOTODRAG_HOME for the test."""
    h = tmp_path / "home"
    monkeypatch.setenv("PHOTODRAG_HOME", str(h))
    return h


@pytest.fixture(scope="module")
def lp():
    from inversion.perceptual import Perceptual

    return {n: Perceptual(n, random_backbone=True) for n in ("alex", "vgg")}


@pytest.fixture
def env(tmp_path, home, monkeypatch, lp):
    """For end-to-end edits: a tiny model file, random-backbone LPIPS, a projection counter, a recipe writer."""
    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=64, dim=32), model)
    import inversion.api as api

    calls = {"project": 0}
    real = api.project

    def counted(*a, **k):
        calls["project"] += 1
        return real(*a, **k)

    monkeypatch.setattr(api, "project", counted)

    def recipe(**over):
        r = {
            "model": str(model),
            "drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}],
            "invert": {"projection_steps": 4, "tuning_steps": 2, "lpips_threshold": 0.0},
            "drag": {"steps": 3},
        }
        r.update(over)
        path = tmp_path / f"recipe{len(list(tmp_path.glob('recipe*.json')))}.json"
        path.write_text(json.dumps(r))
        return path

    return {"model": model, "calls": calls, "recipe": recipe, "tmp": tmp_path, "home": home}


BAD_INPUTS = "test_bad_inputs.py"


def pytest_terminal_summary(terminalreporter):
    """Report the bad-input corpus (tests/test_bad_inputs.py) as cases tried / passed."""
    reports = [
        r
        for key in ("passed", "failed", "skipped", "error")
        for r in terminalreporter.stats.get(key, [])
        if getattr(r, "nodeid", "").split("::")[0].endswith(BAD_INPUTS)
        and getattr(r, "when", "call") in ("call", "setup")
    ]
    tried = {r.nodeid for r in reports if not (r.when == "setup" and r.passed)}
    if not tried:
        return
    passed = {r.nodeid for r in reports if r.when == "call" and r.passed}
    skipped = {r.nodeid for r in reports if r.skipped}
    terminalreporter.write_line(
        f"bad-input corpus: {len(tried)} cases tried, {len(passed)} passed, "
        f"{len(skipped)} skipped, {len(tried) - len(passed) - len(skipped)} failed"
    )
