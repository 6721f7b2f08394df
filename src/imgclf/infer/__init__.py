"""Inference: the Predictor (run folders and exported files), export (ONNX, int8, TorchScript), the REST server.

``imgclf.infer.serve`` (FastAPI) is imported only by whoever serves, so this package stays light.
"""

from imgclf.infer.export import export
from imgclf.infer.predict import Predictor

__all__ = ["Predictor", "export"]
