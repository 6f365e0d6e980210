"""Evaluation beyond the training objective: peer baselines, fine-tuning curves, memorization audits."""
