import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty PHOTODRAG_HOME for the test."""
    h = tmp_path / "home"
    monkeypatch.setenv("PHOTODRAG_HOME", str(h))
    return h


BAD_INPUTS = "test_bad_inputs.py"


def pytest_terminal_summary(terminalreporter):
    """Report the bad-input corpus (tests/test_bad_inputs.py) as cases tried / passed."""
    reports = [r for key in ("passed", "failed", "skipped", "error") for r in terminalreporter.stats.get(key, [])
               if getattr(r, "nodeid", "").split("::")[0].endswith(BAD_INPUTS)
               and getattr(r, "when", "call") in ("call", "setup")]
    tried = {r.nodeid for r in reports if not (r.when == "setup" and r.passed)}
    if not tried:
        return
    passed = {r.nodeid for r in reports if r.when == "call" and r.passed}
    skipped = {r.nodeid for r in reports if r.skipped}
    terminalreporter.write_line(f"bad-input corpus: {len(tried)} cases tried, {len(passed)} passed, "
                                f"{len(skipped)} skipped, {len(tried) - len(passed) - len(skipped)} failed")
