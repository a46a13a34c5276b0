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
