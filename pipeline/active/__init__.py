"""ML-guided docking: screen a library too large to dock by docking a well-chosen fraction of it.

A cheap surrogate of the docking score, retrained each round on what has been docked,
predicts the rest of the library (streamed in chunks) and decides what to dock next.

* :mod:`.loop` - :class:`ActiveLoop` (rounds, budget, stopping rule, state) and its settings;
* :mod:`.acquisition` - greedy, UCB and Thompson utilities (lower score = better, handled
  there once) and the streaming top-``n`` selector;
* :mod:`.surrogate` - the :class:`Surrogate` contract; :mod:`.registry` - :func:`make_surrogate`;
  :mod:`.kernel_models` (the default: a MinMax-kernel Gaussian process on count fingerprints),
  :mod:`.fingerprint_models` (random forest, MLP ensemble on count fingerprints) and
  :mod:`.graph_models` (ligand-graph GNN ensemble in PyG), trained by :mod:`.ensemble_training`;
* :mod:`.features` - Morgan count fingerprints and 2D ligand graphs;
* :mod:`.chunks` - libraries as streams of chunks, and streaming prediction;
* :mod:`.objective` - the objective contract and :class:`LookupObjective` (scores from a table);
* :mod:`.metrics` - the fraction of the true top-k a screen found.

Import cost: the loop, acquisition and objective modules need only NumPy and pandas; the
surrogates import PyTorch (and scikit-learn for the random forest; SciPy for the GP) when built.
"""

from __future__ import annotations

from .acquisition import TopSelector, acquisition_function, greedy, thompson, ucb
from .chunks import CompoundChunk, FrameLibrary, ParquetLibrary, PredictedChunk, predict_chunks
from .loop import ActiveLoop, LoopSettings, LoopState, Proposal, RoundRecord, StoppingRule
from .metrics import top_fraction_found
from .objective import Evaluation, LookupObjective, Objective
from .registry import SURROGATES, make_surrogate
from .surrogate import Prediction, Surrogate

__all__ = [
    "SURROGATES",
    "ActiveLoop",
    "CompoundChunk",
    "Evaluation",
    "FrameLibrary",
    "LookupObjective",
    "LoopSettings",
    "LoopState",
    "Objective",
    "ParquetLibrary",
    "PredictedChunk",
    "Prediction",
    "Proposal",
    "RoundRecord",
    "StoppingRule",
    "Surrogate",
    "TopSelector",
    "acquisition_function",
    "greedy",
    "make_surrogate",
    "predict_chunks",
    "thompson",
    "top_fraction_found",
    "ucb",
]
