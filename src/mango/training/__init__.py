"""Reproducible, resumable training of generators and target networks.

``train_generator`` (:mod:`.gan`: sngan28, sngan32, sngan32-lite, vqvae) and ``train_target``
(:mod:`.targets`: mnist-snn, cifar-snn, cifar-spiking-resnet18, alexnet, resnet18, vgg16), also as
``mango train gen|target``; ``python -m mango.training.sngan`` and ``python -m mango.training.spiking_cnn``
rebuild the embedded weights (see ``mango/weights/MODEL_CARD.md``).
"""


def __getattr__(name: str) -> object:
    """``mango.training.train_generator`` / ``train_target``, imported on first use (they pull in torchvision)."""
    if name == "train_generator":
        from .gan import train_generator
        return train_generator
    if name == "train_target":
        from .targets import train_target
        return train_target
    raise AttributeError(name)
