"""imagegate quality model, inference only: ``model.load()`` -> predictor with ``preprocess`` and ``predict``.

Owns what the worker runs: the network (``architecture``), weights files (``checkpoint``,
``weights/``), preprocessing and views, the runtimes and the ONNX export, plus ``testing``'s
random plumbing model. May import numpy, Pillow, torch, ONNX Runtime and OpenVINO (torch only
once a runtime that needs it is chosen), and nothing else of ours: never ``consumer``,
``producer_tools`` or ``training`` (tests/unit/test_layering.py checks this). Training and
evaluation live in ``training`` (``python -m training.train`` / ``training.evaluate``, with
the ``train`` extras).
"""

from .predictor import DEFAULT_WEIGHTS, ModelLoadError, Predictor, load

__all__ = ["DEFAULT_WEIGHTS", "ModelLoadError", "Predictor", "load"]
