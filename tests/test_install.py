"""A non-editable install: the wheel's console commands find the shipped configs from any folder.

The wheel is built from a copy of the checkout and installed into a new venv without its
dependencies; that venv sees the test environment's packages (torch, Lightning...) through a
``.pth`` line, which adds their folder but does not run its ``.pth`` files, so the checkout's own
editable install stays out of sight. The commands then run from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow

#: Build leftovers and run outputs of a checkout that a wheel must not depend on.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "wandb", "multirun"
)

WHERE = "import hyperpred.console as c; print(c.__file__, c.config_path())"

USER_EXPERIMENT = """\
# @package _global_
defaults:
  - override /target: mlp
tags: [mine]
seed: 3
target:
  archs: [{hidden: 5}, {hidden: 6}]
"""


def yaml_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*.yaml"))


def run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYPERPRED_ROOT")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv holding only the hyperpred wheel (and a path to the test environment's packages)."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("install")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCES)
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(tmp / "src")], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("hyperpred-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp)
    Path(site.stdout.strip(), "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return tmp / "venv"


def test_console_commands_run_from_any_folder_with_a_user_config_dir(venv, tmp_path):
    bin_dir, work = venv / "bin", tmp_path / "somewhere"
    (work / "my_conf" / "experiment").mkdir(parents=True)
    (work / "my_conf" / "experiment" / "mine.yaml").write_text(USER_EXPERIMENT)
    where = run([str(bin_dir / "python"), "-c", WHERE], work)
    module, conf = where.stdout.split()
    assert Path(module).is_relative_to(venv) and conf == "pkg://hyperpred.conf"
    assert yaml_files(Path(module).parent / "conf") == yaml_files(ROOT / "conf")  # every config is shipped

    run([str(bin_dir / "hyperpred-train"), "--config-dir", "my_conf", "experiment=mine", *TINY], work)
    (run_dir,) = (work / "outputs" / "runs" / "train").iterdir()  # under the folder it started from
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert resolved["target"]["archs"] == [{"hidden": 5}, {"hidden": 6}] and resolved["tags"] == ["mine"]
    assert json.loads((run_dir / "run.json").read_text())["choices"]["experiment"] == "mine"
    sources = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["config_sources"]
    assert {"path": "hyperpred.conf", "schema": "pkg", "provider": "main"} in sources
    assert (run_dir / "train.log").is_file() and (run_dir / "config_tree.log").is_file()

    ckpt = run_dir / "checkpoints" / "best.ckpt"
    run([str(bin_dir / "hyperpred-eval"), f"ckpt_path={ckpt}", "timing=false"], work)
    (eval_dir,) = (work / "outputs" / "runs" / "eval").iterdir()
    assert "test/pred_query_loss" in json.loads((eval_dir / "metrics.json").read_text())

    zoo = run([str(bin_dir / "hyperpred-build-zoo"), "--config-dir", "my_conf", "experiment=mine", *TINY], work)
    zoo_dir = work / zoo.stdout.strip().splitlines()[-1]  # the last line: the zoo's folder, relative to here
    assert (zoo_dir / "manifest.json").is_file() and zoo_dir.parent.parent == work / "outputs" / "cache"
    assert "ckpt_path" in run([str(bin_dir / "hyperpred-predict"), "--help"], work).stdout
    assert "multirun folder" in run([str(bin_dir / "hyperpred-report"), "--help"], work).stdout
