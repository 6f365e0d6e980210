"""Multiruns through the real CLI: one wandb run per job, the sweep report, Optuna, launchers, DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from tests.conftest import CONF_DIR, TINY, run_script

#: TINY without its logger choice (each test picks one).
SMALL = [o for o in TINY if not o.startswith("logger=")]


def _sweep_dir(root: Path) -> Path:
    (sweep,) = (root / "outputs" / "multiruns" / "train").iterdir()
    return sweep


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory) -> Path:
    """A 2 x 2 grid (lr x seed) with offline wandb: what a researcher runs, shrunk."""
    root = tmp_path_factory.mktemp("wandb_sweep")
    out = run_script(
        "train.py",
        "-m",
        "seed=0,1",
        "optimizer.lr=0.001,0.01",
        "logger=wandb",
        *SMALL,
        cwd=root,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb_dir")},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return _sweep_dir(root)


def test_multirun_makes_one_offline_wandb_run_per_job_in_one_group(wandb_sweep):
    jobs = sorted(p for p in wandb_sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    infos = [json.loads((job / "run.json").read_text()) for job in jobs]
    ids = [info["wandb"]["id"] for info in infos]
    assert len(set(ids)) == 4  # wandb.finish() ran after every job: no run reused
    assert {info["wandb"]["group"] for info in infos} == {f"train-{wandb_sweep.name}"}
    assert {info["wandb"]["mode"] for info in infos} == {"offline"}
    for job, info, run_id in zip(jobs, infos, ids):
        (run_dir,) = (job / "wandb").glob(f"offline-run-*-{run_id}")
        record_log = (run_dir / f"run-{run_id}.wandb").read_bytes()  # wandb's own offline record log
        for needle in (
            wandb_sweep.name,
            "zoo_hash",
            info["git_commit"],
            "optimized_metric",
            info["zoo"]["content_hash"],
        ):
            assert needle.encode() in record_log, needle
        assert list((run_dir / "files" / "media" / "images").rglob("weight_histograms*.png"))
        assert f"seed={info['seed']}" in info["overrides"] and "logger=wandb" in info["overrides"]


def test_multirun_ends_with_a_report_naming_the_best_setting(wandb_sweep):
    md = (wandb_sweep / "report.md").read_text()
    assert "swept: `seed`, `optimizer.lr`" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and ("0.001" in line or "0.01" in line)]
    assert len(rows) == 2 and sum("★" in r for r in rows) == 1
    assert all(" ± " in r and "| 2 |" in r for r in rows)  # mean ± std over the two seeds
    plots = sorted(wandb_sweep.glob("report_*_vs_optimizer_lr.png"))
    assert plots and all(p.stat().st_size > 5000 for p in plots)

    report = json.loads((wandb_sweep / "report.json").read_text())
    vals = {r["values"]["optimizer.lr"]: r["val/query_loss_best"] for r in report["rows"]}  # what sweeps optimize
    per_job = {}
    for job in (p for p in wandb_sweep.iterdir() if p.is_dir() and p.name.isdigit()):
        lr = next(
            o.split("=")[1]
            for o in yaml.safe_load((job / "overrides.yaml").read_text())
            if o.startswith("optimizer.lr=")
        )
        per_job.setdefault(lr, []).append(json.loads((job / "metrics.json").read_text())["val/query_loss_best"])
    for lr, losses in per_job.items():
        assert math.isclose(vals[lr]["mean"], sum(losses) / 2, rel_tol=1e-9) and vals[lr]["n"] == 2
    best_lr = min(per_job, key=lambda lr: sum(per_job[lr]))
    assert report["best"] == {"optimizer.lr": best_lr}


def test_optuna_study_survives_crashed_and_diverged_trials(tmp_path):
    # seed=6 makes the TPE start-up draws: trial 0 batch_size=0 (crash), trial 1 lr=1e20 (NaN), trial 2 fine.
    out = run_script(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "seed=6",
        "data.batch_size=choice(0,16)",
        "optimizer.lr=choice(0.001,1e20)",
        "logger=none",
        "hydra.callbacks.report.plots=false",
        *(o for o in SMALL if not o.startswith("data.batch_size=")),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    failed = [line.split("Failed experiment: ", 1)[1] for line in log.splitlines() if "Failed experiment: " in line]
    assert len(failed) == 2, failed  # each reported once, and the study went on
    assert "data.batch_size" in failed[0] and "nan" in failed[1].lower()
    sweep = _sweep_dir(tmp_path)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["data.batch_size"] == 16 and best["best_params"]["optimizer.lr"] == 0.001
    assert math.isfinite(best["best_value"])
    assert "Best: " in log and "Failed or diverged jobs" in (sweep / "report.md").read_text()


@pytest.mark.slow
def test_optuna_ranks_trials_by_the_best_checkpoints_validation_value(tmp_path):
    """Each trial returns its metrics.json's val/query_loss_best, and the study's best trial is their argmin."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = run_script(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        "optimizer.lr=choice(0.001,0.01,0.1)",
        "hydra.callbacks.report.plots=false",
        *SMALL,
        "logger=none",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    study = optuna.load_study(study_name="train", storage=storage)
    assert len(study.trials) == 3
    recorded = {}
    for trial in study.trials:
        job = sweep / str(trial.number)
        overrides = yaml.safe_load((job / "overrides.yaml").read_text())
        assert f"optimizer.lr={trial.params['optimizer.lr']}" in overrides
        recorded[trial.number] = json.loads((job / "metrics.json").read_text())["val/query_loss_best"]
        assert trial.value == recorded[trial.number]  # the value returned is the one the run reports
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    argmin = min(recorded, key=recorded.get)
    assert best["best_value"] == recorded[argmin] and study.best_trial.number == argmin
    assert best["best_params"]["optimizer.lr"] == study.trials[argmin].params["optimizer.lr"]


@pytest.mark.slow
def test_submitit_local_runs_jobs_in_parallel_processes(tmp_path):
    out = run_script("train.py", "-m", "hydra/launcher=submitit_local", "seed=0,1", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    infos = [json.loads((sweep / str(i) / "run.json").read_text()) for i in range(2)]
    assert all(info["torch_threads"] == 1 for info in infos)  # parallel jobs do not oversubscribe the cores
    assert all((sweep / str(i) / "metrics.json").is_file() for i in range(2))
    assert list((sweep / ".submitit").iterdir())


def test_ddp_sim_matches_one_process(tmp_path):
    """DDP with 2 gloo CPU processes: the zoo is built once and the metrics match one process."""
    single = run_script("train.py", *TINY, "hydra.run.dir=outputs/single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_script("train.py", *TINY, "trainer=ddp_sim", "hydra.run.dir=outputs/ddp", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = json.loads((tmp_path / "outputs/single/metrics.json").read_text())
    b = json.loads((tmp_path / "outputs/ddp/metrics.json").read_text())
    assert b["zoo/targets_trained"] == 0  # rank 0 loaded the zoo the single run built; rank 1 too
    assert a["test/num_tasks"] == b["test/num_tasks"]  # padding repeats were dropped
    for key in ("val/query_loss", "val/weight_mse", "test/pred_query_loss", "test/weight_mse", "test/ratio_vs_trained"):
        assert math.isclose(a[key], b[key], rel_tol=1e-4), (key, a[key], b[key])
    assert a["fit/steps"] == b["fit/steps"]  # the global batch is split over the ranks: as many steps
    info = json.loads((tmp_path / "outputs/ddp/run.json").read_text())
    assert info["torch_threads"] >= 1
    assert not (tmp_path / "outputs/ddp/train_ddp_process_1.log").exists()  # spawned workers, not a re-run command


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "ddp_sim"])
def test_trainer_configs_compose(trainer):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer={trainer}"])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if trainer.startswith("ddp"):
        assert cfg.trainer.strategy.process_group_backend == ("gloo" if trainer == "ddp_sim" else "nccl")


@pytest.mark.parametrize(("choice", "launcher"), [("slurm", "SlurmLauncher"), ("local", "LocalLauncher")])
def test_launcher_configs_select_submitit(choice, launcher):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"launcher={choice}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(launcher)
    assert cfg.hydra.launcher.timeout_min > 0


def test_optuna_search_space_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.max_failure_rate == 1.0 and cfg.optimized_metric == "val/query_loss_best"
    assert "optimizer.lr" in cfg.hydra.sweeper.params


@pytest.mark.slow
def test_ddp_that_re_runs_the_command_line_is_refused_inside_a_multirun(tmp_path):
    """Lightning would start rank 1 by re-running `-m ...`, i.e. a second copy of the whole sweep."""
    out = run_script(
        "train.py",
        "-m",
        "trainer=ddp_sim",
        "trainer.strategy.start_method=popen",
        "seed=0",
        *TINY,
        "hydra.callbacks.report.plots=false",
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "inside a multirun" in out.stderr and "launcher=slurm" in out.stderr and "start_method=spawn" in out.stderr
    assert "train_ddp_process_1" not in out.stdout + out.stderr


#: The limits lightning-hydra-template's DDP-sim sweeps use, as `+` overrides (trainer configs do not set them).
DDP_LIMITS = ["+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2"]


def _wandb_runs(sweep: Path) -> list[dict]:
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    infos = [json.loads((job / "run.json").read_text()) for job in jobs]
    for job, info in zip(jobs, infos):
        assert (job / "metrics.json").is_file()
        assert list((job / "wandb").glob(f"offline-run-*-{info['wandb']['id']}")), job
    assert len({info["wandb"]["id"] for info in infos}) == len(infos)  # one wandb run per job
    return infos


@pytest.mark.slow
def test_ddp_sim_sweep_with_wandb(tmp_path):
    """The template's DDP-sim sweep: 2 gloo worker processes per job, inside `-m`, zoo built once."""
    out = run_script(
        "train.py",
        "-m",
        "trainer=ddp_sim",
        *DDP_LIMITS,
        "seed=1,2",
        "logger=wandb",
        "hydra.callbacks.report.plots=false",
        *SMALL,
        cwd=tmp_path,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir")},
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    infos = _wandb_runs(sweep)
    assert [info["seed"] for info in infos] == [1, 2]
    assert [info["zoo"]["targets_trained"] for info in infos] == [96, 0]  # the second job loads the first's zoo
    metrics = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(2)]
    for m in metrics:
        assert m["fit/steps"] == 2 * 3  # 2 epochs x limit_train_batches, the same on both ranks
        assert math.isfinite(m["val/query_loss_best"]) and math.isfinite(m["test/pred_query_loss"])
    assert metrics[0]["val/query_loss_best"] != metrics[1]["val/query_loss_best"]  # the seeds differ


@pytest.mark.slow
def test_ddp_sim_optuna_sweep_with_wandb(tmp_path):
    """The template's DDP-sim Optuna sweep: every trial a 2-process DDP run, ranked by val/query_loss_best."""
    out = run_script(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "trainer=ddp_sim",
        *DDP_LIMITS,
        "logger=wandb",
        "hydra.callbacks.report.plots=false",
        *SMALL,
        cwd=tmp_path,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir")},
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    assert len(_wandb_runs(sweep)) == 3
    values = [json.loads((sweep / str(i) / "metrics.json").read_text())["val/query_loss_best"] for i in range(3)]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(values)
