"""The ecosystem's conventions as config choices: callbacks, extras, debug=default, tags in the logs,
MLflow, an empty WANDB_MODE, and every experiment under fast_dev_run."""

from __future__ import annotations

import csv
import json
import struct
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict
from pytorch_lightning import Callback
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, RichModelSummary, RichProgressBar

from hyperpred import extras
from hyperpred.errors import ConfigError
from hyperpred.extras import DEV_TAGS, apply_extras, enforce_tags, silence_known_warnings
from hyperpred.run.build import instantiate_list
from hyperpred.train import train
from hyperpred.wandb_env import check_wandb_mode
from tests.conftest import CONF_DIR, TINY, run_script

ALL_CALLBACKS = "callbacks=[default,early_stopping,lr_monitor,rich_progress_bar,rich_model_summary]"


class AnomalyProbe(Callback):
    """Records whether autograd's anomaly detection is on while a training batch runs."""

    seen: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        AnomalyProbe.seen.append(torch.is_anomaly_enabled())


def tensorboard_texts(folder: Path) -> dict[str, str]:
    """Text summaries of the TensorBoard event files under ``folder`` (read with tensorboardX's protobufs)."""
    from tensorboardX.proto.event_pb2 import Event

    texts = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):  # TFRecord: length (u64), its crc (u32), the record, its crc (u32)
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 16 + length
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "text":
                    texts[value.tag] = value.tensor.string_val[0].decode()
    return texts


def test_callback_choices_compose_with_the_default_ones_and_run(make_cfg, capsys):
    cfg = make_cfg(
        ALL_CALLBACKS,
        "logger=[csv,tensorboard]",
        "tags=[conventions,tiny]",
        "trainer.max_epochs=4",
        "trainer.enable_progress_bar=true",
        "callbacks.early_stopping.stopping_threshold=1e9",  # any finite loss is below it: stop after epoch 0
    )
    trainer = instantiate(cfg.trainer, callbacks=instantiate_list(cfg.callbacks), logger=False)
    assert isinstance(trainer.progress_bar_callback, RichProgressBar)
    kinds = {type(cb) for cb in trainer.callbacks}
    assert {EarlyStopping, LearningRateMonitor, RichModelSummary} <= kinds
    assert len(trainer.checkpoint_callbacks) == 2  # best.ckpt and last.ckpt of callbacks/default still there

    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert "Trainable params" in capsys.readouterr().out  # the rich model summary
    (metrics_csv,) = (out / "csv").rglob("metrics.csv")
    rows = list(csv.DictReader(metrics_csv.open()))
    assert [int(r["epoch"]) for r in rows if r.get("val/query_loss")] == [0]  # early stopping: 1 of 4 epochs
    assert any(r.get("lr-AdamW") for r in rows) and float(next(r for r in rows if r["lr-AdamW"])["lr-AdamW"]) == 1e-3
    assert (out / "checkpoints" / "best.ckpt").is_file() and "test/pred_query_loss" in metrics
    for logger in ("csv", "tensorboard"):
        (hparams,) = (out / logger).rglob("hparams.yaml")
        assert yaml.safe_load(hparams.read_text())["tags"] == ["conventions", "tiny"], logger
    assert tensorboard_texts(out / "tensorboard")["tags/text_summary"] == "conventions, tiny"
    assert json.loads((out / "run.json").read_text())["tags"] == ["conventions", "tiny"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["callbacks=[default,rich_progress_bar]", "trainer.enable_progress_bar=false"], "enable_progress_bar=true"),
        (["callbacks=[default,lr_monitor]", "logger=none"], "callbacks.lr_monitor .*logger is none"),
    ],
)
def test_callback_choices_lightning_would_refuse_fail_before_any_zoo(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_extras(make_cfg(*overrides))


def test_a_logger_whose_package_is_missing_fails_before_any_zoo(make_cfg, monkeypatch):
    monkeypatch.setitem(extras.OPTIONAL_LOGGERS, "csv", (("no_such_module_anywhere",), "csv"))
    with pytest.raises(ConfigError, match=r"logger.csv needs the no_such_module_anywhere package: .*hyperpred\[csv\]"):
        apply_extras(make_cfg("logger=csv"))


def test_extras_print_the_config_tree_and_save_it(make_cfg, capsys):
    cfg = make_cfg("target.archs=[{hidden:7}]")
    apply_extras(cfg)
    printed = capsys.readouterr().out
    saved = (Path(cfg.paths.output_dir) / "config_tree.log").read_text()
    for text in (printed, saved):
        assert "hidden: 7" in text and "task_name" in text and "in_dim: ???" in text  # ??? is filled in at run time
    assert saved.index("task_name") < saved.index("target") < saved.index("trainer")


def test_enforce_tags():
    assert enforce_tags(["sine", "ablation"], "feature_ablation") == ["sine", "ablation"]
    assert enforce_tags(list(DEV_TAGS)) == list(DEV_TAGS)  # a plain development run may keep the default
    with pytest.raises(ConfigError, match="experiment=seed_ex1 has only the default tags"):
        enforce_tags(list(DEV_TAGS), "seed_ex1")
    with pytest.raises(ConfigError, match="tags is empty"):
        enforce_tags([])
    with pytest.raises(ConfigError, match="tags must be a list"):
        enforce_tags("sine")
    with pytest.raises(ConfigError, match="at most 64 characters"):
        enforce_tags(["x" * 65])


def test_dev_tags_are_the_default_config_tags(make_cfg):
    assert list(make_cfg().tags) == list(DEV_TAGS)


def test_an_experiment_without_tags_of_its_own_is_refused_in_one_line(tmp_path):
    proc = run_script("train.py", "experiment=seed_ex1", "tags=[dev]", *TINY, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: tags=['dev']: experiment=seed_ex1 has only")
    assert not (tmp_path / "outputs" / "cache").exists()  # refused before any zoo


@pytest.fixture
def hydra_job():
    """Sets ``HydraConfig`` as a Hydra job would (the compose API does not), and clears it afterwards."""
    yield HydraConfig.instance().set_config
    HydraConfig.instance().cfg = None


def test_every_experiment_sets_tags_that_pass(tmp_path, hydra_job):
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={path.stem}"], return_hydra_config=True)
        hydra_job(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / path.stem)
            cfg.extras.print_config = False
        apply_extras(cfg)  # the enforce_tags check with the experiment choice that Hydra records
        with open_dict(cfg):
            cfg.tags = list(DEV_TAGS)
        with pytest.raises(ConfigError, match=f"experiment={path.stem} has only the default tags"):
            apply_extras(cfg)


def test_known_warnings_are_the_ones_a_tiny_run_emits_and_get_silenced(make_cfg):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(make_cfg("logger=csv"))  # Lightning warns about the logging interval only with a logger
    emitted = [w for w in caught if any(pattern_hit(p, str(w.message)) for p in extras.KNOWN_WARNINGS)]
    assert any("logging interval" in str(w.message) for w in emitted)  # 5 batches < log_every_n_steps=10
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        silence_known_warnings()
        for w in emitted:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        warnings.warn("another warning")  # anything else still shows
    assert [str(w.message) for w in again] == ["another warning"]


def pattern_hit(pattern: str, message: str) -> bool:
    import re

    return re.match(pattern, message) is not None


def test_debug_default_runs_apart_with_anomaly_detection(make_cfg):
    cfg = make_cfg("debug=default", "+callbacks.anomaly_probe._target_=tests.test_conventions.AnomalyProbe")
    assert cfg.task_name == "debug" and not cfg.extras.ignore_warnings and not cfg.extras.enforce_tags
    AnomalyProbe.seen.clear()
    train(cfg)
    assert AnomalyProbe.seen and all(AnomalyProbe.seen) and not torch.is_anomaly_enabled()


@pytest.mark.parametrize(
    ("mode", "epochs"), [("default", 1), ("fdr", 1), ("limit", 3), ("overfit", 200), ("profiler", 1)]
)
def test_every_debug_mode_starts_from_debug_default(mode, epochs):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"debug={mode}"], return_hydra_config=True)
    assert cfg.task_name == "debug" and cfg.trainer.max_epochs == epochs
    assert cfg.trainer.detect_anomaly == (mode != "profiler")  # anomaly detection would distort the profile
    assert cfg.hydra.job_logging.root.level == "DEBUG" and cfg.hydra.job.name == "debug"  # <run>/debug.log
    assert "/runs/debug/" in cfg.hydra.run.dir


def test_an_empty_wandb_mode_is_unset_and_a_wrong_one_is_named(make_cfg, monkeypatch):
    cfg = make_cfg("logger=wandb")
    monkeypatch.setenv("WANDB_MODE", "")
    assert check_wandb_mode(cfg) == "offline"  # the logger's ${oc.env:WANDB_MODE,offline} default
    assert "WANDB_MODE" not in __import__("os").environ
    monkeypatch.setenv("WANDB_MODE", "ofline")
    with pytest.raises(ConfigError, match="WANDB_MODE='ofline' is not a wandb mode"):
        check_wandb_mode(cfg)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert check_wandb_mode(cfg) == "disabled"
    with open_dict(cfg):
        cfg.logger.wandb.mode = "nope"
    with pytest.raises(ConfigError, match="logger.wandb.mode='nope'"):
        check_wandb_mode(cfg)


def test_mlflow_logger_writes_tags_and_metrics_to_a_local_sqlite_store(make_cfg, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("logger=mlflow", "tags=[sine,tiny]", "trainer.max_epochs=1")
    assert cfg.logger.mlflow.tracking_uri.startswith("sqlite:///") and cfg.logger.mlflow.tags == ["sine", "tiny"]
    with open_dict(cfg):
        cfg.paths.log_dir = str(tmp_path / "outputs")
    apply_extras(cfg)
    train(cfg)
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["sine"] == run.data.tags["tiny"] == "true"
    assert "val/query_loss" in run.data.metrics and "test/pred_query_loss" in run.data.metrics
    assert (tmp_path / "outputs" / "mlflow" / "mlflow.db").is_file()


@pytest.mark.slow
def test_debug_run_with_an_empty_wandb_mode_lands_in_its_own_folder(tmp_path):
    proc = run_script(
        "train.py", "debug=default", *[o for o in TINY if o != "logger=none"], cwd=tmp_path, env={"WANDB_MODE": ""}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "runs" / "debug").iterdir()
    log = (run / "debug.log").read_text()
    assert "WANDB_MODE is set but empty: treated as unset" in log
    assert "[pytorch_lightning.trainer.trainer][DEBUG] - Trainer: trainer fit stage" in log  # debug logging
    assert list((run / "wandb").glob("offline-run-*")) and (run / "config_tree.log").is_file()
    assert not (tmp_path / "outputs" / "runs" / "train").exists()


@pytest.mark.slow
def test_every_experiment_runs_under_fast_dev_run(tmp_path):
    """``-m 'experiment=glob(*)' ++trainer.fast_dev_run=true``, with small zoos: every experiment, sweeps included."""
    zoo = ["++zoo.num_targets=96", "++zoo.shard_size=48", "++zoo.steps=5", "++zoo.progress=false"]
    proc = run_script(
        "train.py", "-m", "experiment=glob(*)", "++trainer.fast_dev_run=true", *zoo, cwd=tmp_path, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    experiments = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    jobs = sorted((tmp_path / "outputs" / "multiruns").rglob("metrics.json"))
    overrides = [yaml.safe_load((p.parent / ".hydra" / "overrides.yaml").read_text()) for p in jobs]
    ran = sorted(o for job in overrides for o in job if o.startswith("experiment="))
    assert ran == [f"experiment={name}" for name in experiments]


@pytest.mark.slow
def test_an_experiment_that_is_a_sweep_runs_its_own_jobs_under_fast_dev_run(tmp_path):
    """``experiment=feature_ablation`` is a multirun by itself (hydra.mode); one seed and loss: its 6 conditionings."""
    zoo = ["++zoo.num_targets=96", "++zoo.shard_size=48", "++zoo.steps=5"]
    args = ["experiment=feature_ablation", "++trainer.fast_dev_run=true", "seed=0", "loss=functional", *zoo]
    proc = run_script("train.py", *args, cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    jobs = sorted((tmp_path / "outputs" / "multiruns").rglob("metrics.json"))
    overrides = [yaml.safe_load((p.parent / ".hydra" / "overrides.yaml").read_text()) for p in jobs]
    conditionings = sorted(o.split("=")[1] for job in overrides for o in job if o.startswith("+conditioning="))
    assert conditionings == sorted(["arch", "activation_stats", "gradient_stats", "set_encoder", "oracle", "noise"])
