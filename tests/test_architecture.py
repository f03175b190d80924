"""The package graph runs one way, and the entry point loads only the command it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts import check_imports
from tests.conftest import REPO


def write(root: Path, files: dict[str, str]) -> None:
    for name in check_imports.LAYERS:
        (root / name).mkdir(exist_ok=True)
        (root / name / "__init__.py").touch()
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def test_this_repository_has_no_upward_import_and_no_cycle() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.check_imports"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout
    assert "broker -> protocol" in done.stdout and "ok:" in done.stdout


def test_an_upward_import_a_peer_import_and_a_cycle_are_each_found(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "protocol/codec.py": "from broker.forwarder import Forwarder\n",  # upward
            "trainer/loop.py": "def f():\n    import viewer.app\n",  # a peer, inside a function
            "broker/a/__init__.py": "",
            "broker/a/one.py": "from broker.b import two\n",
            "broker/b/__init__.py": "",
            "broker/b/two.py": "from ..a import one\n",  # relative: a cycle a <-> b
            "viewer/app.py": "from protocol import codec\n",  # allowed: downward
        },
    )
    _, problems = check_imports.check(tmp_path)
    assert any("protocol/codec.py:1: protocol imports broker.forwarder" in p for p in problems)
    assert any(
        "trainer/loop.py:2: trainer imports viewer.app, which is a peer" in p for p in problems
    )
    assert "cycle between packages: broker.a <-> broker.b" in problems
    assert len(problems) == 3, problems


def test_the_entry_point_imports_only_the_chosen_command() -> None:
    probe = (
        "import sys\n"
        "from protocol.cli import build_parser\n"
        "build_parser('train')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('bokeh', 'viewer', 'mcap', 'tornado')))\n"
        "build_parser(None)\n"
        "print('trainer.cli' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded, trainer = done.stdout.splitlines()
    assert loaded == "[]", f"'train' loaded the viewer's libraries: {loaded}"
    assert trainer == "True"


def test_every_command_in_the_table_has_its_module() -> None:
    from protocol.cli.commands import COMMANDS

    for name, command in COMMANDS.items():
        path = REPO / (command.module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name}: no {path}"
        assert "def add_arguments" in path.read_text() and "def run" in path.read_text(), name
