"""Rerunnable training scripts for the embedded default models.

``python -m mango.training.spiking_cnn`` and ``python -m mango.training.sngan``
retrain the shipped weights (see ``mango/weights/MODEL_CARD.md``).
"""
