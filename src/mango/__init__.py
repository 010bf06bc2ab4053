"""MANGO: Maximization of neural Activation via Non-Gradient Optimization.

Find the most exciting input (MEI) of a neuron with as few queries as
possible: an optimizer proposes latents, a generator turns them into images,
a target network (or a living neuron) responds.
"""
from .errors import MangoError
from .experiment import RunConfig, RunResult, load_run, read_history, run
from .generators import GENERATORS, Generator, LatentSpace, TorchGenerator
from .optimizers import OPTIMIZERS, Optimizer
from .targets import MODELS, Target, TargetSpec, TorchTarget, make_target
from . import analysis  # mango.analysis.compare, .selectivity, ... (analyses of finished runs)

__version__ = "0.1.0"

__all__ = [
    "GENERATORS", "MODELS", "OPTIMIZERS", "Generator", "LatentSpace", "MangoError", "Optimizer", "RunConfig",
    "RunResult", "Target", "TargetSpec", "TorchGenerator", "TorchTarget", "analysis", "load_run", "make_target",
    "read_history", "run",
]
