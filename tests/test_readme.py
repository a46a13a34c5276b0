"""The README's set-up is what a new user can run, and CI runs exactly its test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_TORCH = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


def setup_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return section, re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_setup_installs_before_testing_and_takes_the_users_photo():
    section, blocks = setup_commands()
    venv, edit, test = blocks
    assert venv.splitlines() == ["python3 -m venv .venv && . .venv/bin/activate", CPU_TORCH]  # before any install
    assert "photodrag doctor" in section  # how to check the install afterwards
    assert edit.startswith("pip install -e . && photodrag edit PHOTO ")
    assert "../shared" not in edit  # a fresh clone has no shared folder
    assert test == "pip install -e '.[test]' && python -m pytest"
    assert "download.pytorch.org/whl/cpu" in section and "2 GB" in section  # the CPU-only hint
    assert "development" in section and "../shared/photos/" in section  # named only as the dev example


def test_ci_runs_exactly_the_readme_test_command():
    _, blocks = setup_commands()
    lines = [
        ln.strip()
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    assert lines[-1] == blocks[2]
    assert any(ln.startswith(CPU_TORCH) for ln in lines)  # CI installs the CPU build of torch first, as the README
    assert not [ln for ln in lines[:-1] if "pytest" in ln]
