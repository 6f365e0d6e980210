"""``scripts/predict.py`` and ``scripts/eval.py`` through real subprocesses and real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperpred import load_predictor, load_target
from hyperpred.api import predict_to_files
from hyperpred.errors import ConfigError
from tests.conftest import run_script
from tests.test_api import ARCHS, new_tasks
from tests.test_digits import tiny_checkpoint

LINEAR_ARCH = "arch={in_features:64,out_features:2}"


@pytest.fixture(scope="session")
def linear_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.getbasetemp(), "digits_linear")


@pytest.fixture
def support(linear_ckpt, tmp_path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One new task's support images ``[20, 64]``, labels ``[20]`` and query images."""
    xs, labels, xq = new_tasks(load_predictor(linear_ckpt), 1, seed=11)
    return xs[0].numpy(), labels[0].numpy(), xq[0].numpy()


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, header: bool = True) -> Path:
    lines = [",".join([*(f"p{i}" for i in range(x.shape[1])), "label"])] if header else []
    lines += [",".join([*(repr(float(v)) for v in row), str(int(label))]) for row, label in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_predict_script_round_trips_through_its_files(linear_ckpt, support, tmp_path):
    x, y, xq = support
    np.savez(tmp_path / "pair.npz", x=x, y=y)
    proc = run_script(
        "predict.py", f"ckpt_path={linear_ckpt}", LINEAR_ARCH, "support=pair.npz", "out=clf", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "load_target" in proc.stdout
    model = load_target(tmp_path / "clf.safetensors")
    meta = json.loads((tmp_path / "clf.json").read_text())
    assert meta["arch"] == {"family": "linear", **ARCHS["digits_linear"]} and meta["n_support"] == 20
    expected = load_predictor(linear_ckpt).materialize(ARCHS["digits_linear"], (x, y))
    with torch.no_grad():
        assert torch.allclose(model(torch.as_tensor(xq)), expected(torch.as_tensor(xq)), atol=1e-6)
    # the same task as a CSV (header, labels in the last column) gives the same classifier,
    # and the written JSON serves as the architecture of the next prediction
    out = predict_to_files(
        linear_ckpt, tmp_path / "clf.json", write_csv(tmp_path / "pair.csv", x, y), tmp_path / "clf_csv"
    )
    again = load_target(out["weights"])
    for k, v in model.state_dict().items():
        assert torch.allclose(again.state_dict()[k], v, atol=1e-6), k


def test_predict_script_reports_a_nan_support_file(linear_ckpt, support, tmp_path):
    x, y, _ = support
    x = x.copy()
    x[2, 7] = np.nan
    write_csv(tmp_path / "nan.csv", x, y)
    proc = run_script("predict.py", f"ckpt_path={linear_ckpt}", LINEAR_ARCH, "support=nan.csv", "out=clf", cwd=tmp_path)
    assert proc.returncode != 0
    assert "support file nan.csv: 1 NaN value(s) in x (samples [2])" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "clf.safetensors").exists()


def test_predict_files_name_the_file_and_the_problem(linear_ckpt, support, tmp_path):
    x, y, _ = support
    arch = ARCHS["digits_linear"]
    np.savez(tmp_path / "short.npz", x=x[:, :60], y=y)
    with pytest.raises(ConfigError, match=r"support file .*short.npz: x has shape \(20, 60\)"):
        predict_to_files(linear_ckpt, arch, tmp_path / "short.npz", tmp_path / "o")
    np.savez(tmp_path / "nokey.npz", images=x, y=y)
    with pytest.raises(ConfigError, match=r"nokey.npz: missing array\(s\) \['x'\]"):
        predict_to_files(linear_ckpt, arch, tmp_path / "nokey.npz", tmp_path / "o")
    write_csv(tmp_path / "wide.csv", np.concatenate([x, x[:, :1]], 1), y)
    with pytest.raises(ConfigError, match=r"wide.csv: x has shape \(20, 65\)"):
        predict_to_files(linear_ckpt, arch, tmp_path / "wide.csv", tmp_path / "o")
    (tmp_path / "ragged.csv").write_text("1,2,3\n1,2\n")
    with pytest.raises(ConfigError, match="ragged.csv: rows have different numbers of columns"):
        predict_to_files(linear_ckpt, arch, tmp_path / "ragged.csv", tmp_path / "o")
    with pytest.raises(ConfigError, match="missing.csv: no such file"):
        predict_to_files(linear_ckpt, arch, tmp_path / "missing.csv", tmp_path / "o")
    with pytest.raises(ConfigError, match="family 'linear'"):
        predict_to_files(linear_ckpt, ARCHS["digits_conv"], write_csv(tmp_path / "ok.csv", x, y), tmp_path / "o")
    assert not list(tmp_path.glob("o.*")), "nothing may be written when the input is bad"


def test_eval_script_reproduces_the_training_runs_test_metrics(linear_ckpt, tmp_path):
    run = linear_ckpt.parent.parent
    best = linear_ckpt.parent / "best.ckpt"
    proc = run_script("eval.py", f"ckpt_path={best}", f"paths.cache_dir={run.parent / 'cache'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "outputs" / "runs" / "eval").glob("*/metrics.json")
    metrics, trained = json.loads(path.read_text()), json.loads((run / "metrics.json").read_text())
    for key in ("test/pred_accuracy", "test/trained_accuracy", "test/pred_query_loss", "test/num_tasks"):
        assert metrics[key] == pytest.approx(trained[key], rel=1e-5), key
    assert metrics["test/predict_seconds"] > 0 and metrics["test/train_seconds"] > 0
    assert "[test] accuracy pred" in proc.stdout


def test_eval_script_scores_every_split_under_its_own_name_and_by_architecture(linear_ckpt, tmp_path):
    """split=all keys each split's metrics by that split (the evaluator follows the names eval.py sets)."""
    run = linear_ckpt.parent.parent
    best = linear_ckpt.parent / "best.ckpt"
    cache = f"paths.cache_dir={run.parent / 'cache'}"
    proc = run_script("eval.py", f"ckpt_path={best}", cache, "split=all", "by_arch=true", "timing=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "outputs" / "runs" / "eval").glob("*/metrics.json")
    metrics, trained = json.loads(path.read_text()), json.loads((run / "metrics.json").read_text())
    splits = {key.split("/")[0] for key in metrics}
    assert {"train", "val", "test"} <= splits
    assert metrics["test/pred_query_loss"] == pytest.approx(trained["test/pred_query_loss"], rel=1e-5)
    assert metrics["train/num_tasks"] > metrics["test/num_tasks"]  # not the test split under another name
    for split in ("train", "test"):
        per_arch = {k: v for k, v in metrics.items() if k.startswith(f"{split}/arch=") and k.endswith("/num_tasks")}
        assert per_arch and sum(per_arch.values()) == metrics[f"{split}/num_tasks"]
        for key in per_arch:
            assert metrics[key.replace("/num_tasks", "/pred_query_loss_median")] > 0
