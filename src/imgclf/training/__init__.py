"""Training: recipes, the Lightning module and callbacks, and the ``train`` entry point."""

from imgclf.training.api import TrainResult, train

__all__ = ["TrainResult", "train"]
