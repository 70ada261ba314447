"""zorgpad's generic top-level package names (``transforms``, ``expectations``, ``reference``)
refused when they resolve to someone else's code, with one ``error:`` line (``flows/entry.py``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from flows.entry import foreign_package
from test_cli_safety import REPO, ZORGPAD, assert_one_error_line, environment


def _zorgpad_with_path(tmp: Path, extra: Path, *args: str) -> subprocess.CompletedProcess:
    env = environment(tmp)
    env["PYTHONPATH"] = f"{extra}:{env['PYTHONPATH']}"
    return subprocess.run([ZORGPAD, *args], capture_output=True, text=True, env=env, timeout=120)


def test_zorgpads_own_packages_pass_the_check():
    assert foreign_package() is None
    done = subprocess.run([ZORGPAD, "--help"], capture_output=True, text=True, env=environment(REPO), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_transforms_package_earlier_on_the_path_is_refused_naming_where_it_is(tmp_path):
    shadow = tmp_path / "elsewhere"
    (shadow / "transforms").mkdir(parents=True)
    (shadow / "transforms" / "__init__.py").write_text("raise RuntimeError('not zorgpad')\n")
    done = _zorgpad_with_path(tmp_path, shadow, "--help")
    assert_one_error_line(done, "'transforms'", str(shadow / "transforms"), "PYTHONPATH")
    assert "not zorgpad" not in done.stderr  # refused before it was imported


def test_another_distribution_claiming_a_zorgpad_package_is_refused_naming_it(tmp_path):
    site = tmp_path / "site"
    info = site / "other_tool-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-tool\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("expectations\n")
    done = _zorgpad_with_path(tmp_path, site, "--help")
    assert_one_error_line(done, "'other-tool'", "'expectations'", "virtual environment")
