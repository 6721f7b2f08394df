"""Inference: the Predictor (run folders and model files), later export and serving."""

from imgclf.infer.predict import Predictor

__all__ = ["Predictor"]
