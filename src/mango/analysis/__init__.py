"""Analyses of finished runs (the paper's Figures 5-11 and the training-dynamics study).

Each analysis is one function returning an :class:`Analysis` (its tables as DataFrames; with ``out`` it
also writes PNG figures and CSV tables), and one ``mango analyze`` command calling it:

=================  ================================================================================
:func:`compare`        convergence of several optimizers on one neuron, and their MEIs side by side
:func:`selectivity`    class entropy of each MEI under spike variability, per-layer histograms
:func:`diversity`      pairwise latent / image distances between the MEIs found for one neuron
:func:`distributions`  MEI responses per layer, one colour per generator
:func:`ceiling`        each run's best response over its neuron's white-box (gradient) MEI
:func:`evolution`      MEIs of neurons across training checkpoints, with accuracy and selectivity
:func:`report`         one self-contained HTML file with every figure and table under a folder
=================  ================================================================================

Runs are read with :func:`load_runs` (every run folder under a folder; a broken one is a one-line
:class:`~mango.errors.MangoError` naming the file). matplotlib is imported only when a figure is drawn.
"""
from .ceiling import ceiling
from .compare import compare, plot_convergence
from .distributions import distributions
from .diversity import diversity, latent_distances, pairwise_distances
from .evolution import EvolutionAnalysis, checkpoints, evolution
from .plots import Analysis
from .report import report
from .selectivity import class_probabilities, normalized_entropy, selectivity
from .study import Run, load_runs, read_run

__all__ = ["Analysis", "EvolutionAnalysis", "Run", "ceiling", "checkpoints", "class_probabilities", "compare",
           "distributions", "diversity", "evolution", "latent_distances", "load_runs", "normalized_entropy",
           "pairwise_distances", "plot_convergence", "read_run", "report", "selectivity"]
