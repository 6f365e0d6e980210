"""The test evaluation of a run, called from the LightningModule's test hooks.

:mod:`.evaluator` collects test batches and summarizes each split; :mod:`.baselines` holds the
per-batch baselines (prediction, trained target, init, zoo mean); :mod:`.finetune` the
``finetune_steps_fraction`` metric; :mod:`.peers` the baselines trained once per run (MAML, a CNP,
the nearest training target), fine-tuning curves and the memorization audit.
"""
