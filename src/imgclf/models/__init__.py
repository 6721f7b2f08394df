"""Models: one registry of from-scratch nets and timm backbones, and the deployable ImageClassifier."""

from imgclf.models import nets as _nets  # noqa: F401  (registers the built-in nets)
from imgclf.models.classifier import ImageClassifier, tta_logits
from imgclf.models.registry import create_model, get_entry, list_models, register_model
from imgclf.models.summary import count_flops, count_params, model_table

__all__ = ["ImageClassifier", "create_model", "get_entry", "list_models", "register_model", "tta_logits",
           "count_flops", "count_params", "model_table"]
