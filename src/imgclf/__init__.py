"""imgclf: from a pile of images to a trained, understood and deployed image classifier.

Examples:
    >>> import imgclf
    >>> result = imgclf.train(dataset="cifar10", data_dir="../shared/data/cifar-10-mini", epochs=2)  # doctest: +SKIP
    >>> imgclf.evaluate(result.run_dir)["accuracy"]  # doctest: +SKIP
    >>> imgclf.Predictor(result.run_dir).predict(["cat.jpg"], top_k=3)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["train", "evaluate", "Predictor", "export", "list_models", "list_datasets", "create_model", "load_config",
           "ImgclfError", "__version__"]

# Heavy modules (torch, lightning) load on first use, so `import imgclf` and `imgclf --help` stay fast.
_LAZY = {
    "train": ("imgclf.training.api", "train"),
    "evaluate": ("imgclf.evaluation.evaluate", "evaluate"),
    "Predictor": ("imgclf.infer.predict", "Predictor"),
    "export": ("imgclf.infer.export", "export"),
    "list_models": ("imgclf.models", "list_models"),
    "create_model": ("imgclf.models", "create_model"),
    "list_datasets": ("imgclf.data", "list_datasets"),
    "load_config": ("imgclf.config", "load_config"),
    "ImgclfError": ("imgclf.errors", "ImgclfError"),
}

if TYPE_CHECKING:
    from imgclf.config import load_config
    from imgclf.data import list_datasets
    from imgclf.errors import ImgclfError
    from imgclf.evaluation.evaluate import evaluate
    from imgclf.infer.export import export
    from imgclf.infer.predict import Predictor
    from imgclf.models import create_model, list_models
    from imgclf.training.api import train


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")
