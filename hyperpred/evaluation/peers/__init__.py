"""Peer baselines a user could pick instead of predicting weights: MAML, a CNP, the nearest training target;
plus the memorization audit and fine-tuning curves. Each is one file; :mod:`.suite` runs the configured ones."""

from hyperpred.evaluation.peers.suite import PeerSuite, run_peers

__all__ = ["PeerSuite", "run_peers"]
