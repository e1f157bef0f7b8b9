"""sparse_mlp: truly sparse MLP training on CPUs.

Layers store and compute only the connections that exist (no dense weights
with a mask). Sparse Evolutionary Training (SET), All-ReLU and Importance
Pruning, with a multithreaded Rust core.

>>> import sparse_mlp as sm
>>> model = sm.SparseMLP([20, 100, 3], activation=sm.AllReLU(0.5), epsilon=10, seed=1)
>>> model.n_connections > 0
True
"""

from . import parallel, recycling
from ._core import __version__, get_num_threads, set_num_threads
from .activations import Activation, AllReLU, LeakyReLU, ReLU, Sigmoid, Tanh
from .errors import (
    CheckpointError,
    DivergenceError,
    InvalidInputError,
    ParallelError,
    SparseMLPError,
)
from .model import Layer, SparseMLP, connection_counts
from .recycling import ContinualBackprop, MidpointLoss, NeuronRecycling, ReDo
from .topology import SET, ImportancePruning

__all__ = [
    "__version__",
    "Activation",
    "AllReLU",
    "CheckpointError",
    "ContinualBackprop",
    "DivergenceError",
    "ImportancePruning",
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
    "SparseMLPError",
    "Tanh",
    "connection_counts",
    "get_num_threads",
    "parallel",
    "recycling",
    "set_num_threads",
]
