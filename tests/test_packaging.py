"""The distribution builds without setuptools deprecation blocks and ships lm-eval's task files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("modeling_glauber", "trainers", "eval", "puzzles", "glauber_cli")


def test_wheel_builds_without_deprecation_warnings_and_ships_the_task_files(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = ("from setuptools import build_meta\n"
             f"print('WHEEL', build_meta.build_wheel({str(tmp_path / 'dist')!r}))\n")
    (tmp_path / "dist").mkdir()
    result = subprocess.run([sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    for warning in ("License classifiers are deprecated", "absent from the `packages` configuration",
                    "SetuptoolsDeprecationWarning"):
        assert warning not in log, log[-3000:]
    wheel = tmp_path / "dist" / log.split("WHEEL ")[1].split()[0]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"eval/tasks/glauber_zeroshot_ppl.yaml", "eval/tasks/glauber_text_metrics.py"} <= names
    assert "License-Expression: Apache-2.0" in metadata and "License :: " not in metadata
