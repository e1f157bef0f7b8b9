"""sparse_mlp: truly sparse MLP training on CPUs.

Layers store and compute only the connections that exist (no dense weights
with a mask). Sparse Evolutionary Training (SET), All-ReLU and Importance
Pruning, with a multithreaded Rust core.

>>> import sparse_mlp as sm
>>> model = sm.SparseMLP([20, 100, 3], activation=sm.AllReLU(0.5), epsilon=10, seed=1)
>>> model.n_connections > 0
True
"""

from typing import Any

from . import datasets, parallel, plots, recycling
from ._core import __version__, get_num_threads, set_num_threads
from .activations import Activation, AllReLU, LeakyReLU, ReLU, Sigmoid, Tanh
from .errors import (
    CheckpointError,
    DivergenceError,
    InsufficientMemoryError,
    InvalidInputError,
    ParallelError,
    SparseMLPError,
)
from .layer import Layer
from .metrics import MetricsLogger, read_metrics
from .model import SparseMLP
from .pruning import ImportancePruning
from .recycling import ContinualBackprop, MidpointLoss, NeuronRecycling, ReDo
from .shape import connection_counts
from .topology import SET

__all__ = [
    "__version__",
    "Activation",
    "AllReLU",
    "CheckpointError",
    "ContinualBackprop",
    "DivergenceError",
    "ImportancePruning",
    "InsufficientMemoryError",
    "InvalidInputError",
    "Layer",
    "LeakyReLU",
    "MidpointLoss",
    "NeuronRecycling",
    "ParallelError",
    "ReDo",
    "ReLU",
    "SET",
    "Sigmoid",
    "SparseMLP",
    "SparseMLPClassifier",
    "SparseMLPError",
    "Tanh",
    "MetricsLogger",
    "connection_counts",
    "datasets",
    "get_num_threads",
    "parallel",
    "plots",
    "read_metrics",
    "recycling",
    "set_num_threads",
]


def __getattr__(name: str) -> Any:
    # The scikit-learn estimator imports scikit-learn, an optional dependency.
    if name == "SparseMLPClassifier":
        try:
            from .estimator import SparseMLPClassifier
        except ImportError as e:
            raise ImportError(
                "sparse_mlp.SparseMLPClassifier needs scikit-learn: pip install 'sparse_mlp[sklearn]' "
                f"({e})"
            ) from None
        return SparseMLPClassifier
    raise AttributeError(f"module 'sparse_mlp' has no attribute {name!r}")
