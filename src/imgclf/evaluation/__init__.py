"""Evaluation: metrics as pure functions, plots apart, and run-level evaluation."""

from imgclf.evaluation.evaluate import evaluate, predict_probs

__all__ = ["evaluate", "predict_probs"]
