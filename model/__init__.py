"""imagegate quality model: ``model.load()`` -> predictor with ``preprocess`` and ``predict``.

Kept free of Kafka/Redis imports (and of torch, until a runtime that needs it is chosen);
training/evaluation live in ``model.train`` and ``model.evaluate`` and need the ``train`` extras.
"""

from .predictor import DEFAULT_WEIGHTS, ModelLoadError, Predictor, load

__all__ = ["DEFAULT_WEIGHTS", "ModelLoadError", "Predictor", "load"]
