"""benchmarks/device_check.sh runs on the CPU with --dry-run (its plumbing, not a GPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_check_dry_run_passes_on_cpu():
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["dry_run"] and out["ok"] and out["device"] == "cpu"
    for row in out["resolutions"].values():
        assert row["fp32"]["image"] <= row["fp32"]["tol"]  # the same path on the same device: ~0
        assert row["forward"]["ms_median"] > 0
    assert out["drag_and_inversion"]["drag"]["finite"] and out["drag_and_inversion"]["inversion"]["finite"]
