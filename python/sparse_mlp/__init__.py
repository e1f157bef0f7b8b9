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

from . import callbacks, datasets, optimizers, parallel, plots, recycling, schedules
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
from .optimizers import SGD, Adam, AdamW
from .pruning import ImportancePruning
from .recycling import ContinualBackprop, MidpointLoss, NeuronRecycling, ReDo
from .shape import connection_counts
from .topology import SET, RigL

__all__ = [
    "__version__",
    "Activation",
    "Adam",
    "AdamW",
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
    "RigL",
    "ReLU",
    "SET",
    "SGD",
    "Sigmoid",
    "SparseMLP",
    "SparseMLPClassifier",
    "SparseMLPError",
    "SparseMLPRegressor",
    "Tanh",
    "MetricsLogger",
    "callbacks",
    "connection_counts",
    "datasets",
    "get_num_threads",
    "optimizers",
    "parallel",
    "plots",
    "read_metrics",
    "recycling",
    "schedules",
    "set_num_threads",
]


def __getattr__(name: str) -> Any:
    # The scikit-learn estimators import scikit-learn, an optional dependency.
    if name in ("SparseMLPClassifier", "SparseMLPRegressor"):
        try:
            from . import estimator
        except ImportError as e:
            raise ImportError(
                f"sparse_mlp.{name} needs scikit-learn: pip install 'sparse_mlp[sklearn]' ({e})"
            ) from None
        return getattr(estimator, name)
    raise AttributeError(f"module 'sparse_mlp' has no attribute {name!r}")
