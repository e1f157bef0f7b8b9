"""Trained models to PyTorch and back (``torch`` is an optional dependency:
this module imports it only when called).

:func:`to_torch` gives a ``torch.nn.Module`` of :class:`SparseLinear` layers
holding sparse CSR weights (``out × in``, as ``nn.Linear`` stores them) with
the model's hidden activations; it returns logits (for ``loss="mse"`` the
outputs, through the output activation). :func:`from_torch` takes such a
module back, or an ``nn.Sequential`` of ``nn.Linear`` layers and activations
whose sparsity is given by ``torch.nn.utils.prune`` masks, by zeros, or by an
explicit magnitude ``threshold``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import number
from .activations import Activation
from .errors import InvalidInputError


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InvalidInputError("the PyTorch export needs torch: pip install torch "
                                "(or the extra: pip install \"sparse_mlp[torch]\")") from None
    return torch


@dataclass(frozen=True)
class CoreActivation(Activation):
    """A hidden activation given by its compiled form: ``("leaky", slope)``
    (any slope, All-ReLU's negative ones included), ``("tanh", 0)`` or
    ``("sigmoid", 0)``; what a model read back from another framework keeps."""

    kind: str
    slope: float = 0.0

    def core_spec(self, k: int) -> tuple[str, float]:
        return (self.kind, float(self.slope))


_CLASSES: dict[str, Any] = {}


def _classes() -> dict[str, Any]:
    """The module classes, defined once torch is imported."""
    if _CLASSES:
        return _CLASSES
    torch = _torch()
    nn = torch.nn

    class SparseLinear(nn.Module):
        """``y = x Wᵀ + b`` with ``W`` a sparse CSR tensor (out × in), as
        ``nn.Linear`` computes with a dense one."""

        def __init__(self, weight: Any, bias: Any) -> None:
            super().__init__()
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)
            self.in_features, self.out_features = weight.shape[1], weight.shape[0]

        def forward(self, x: Any) -> Any:
            return torch.sparse.mm(self.weight, x.t()).t() + self.bias

        def extra_repr(self) -> str:
            nnz = int(self.weight.values().numel())
            return f"in_features={self.in_features}, out_features={self.out_features}, connections={nnz}"

    class SparseMLPModule(nn.Module):
        """A trained sparse MLP for inference: its layers, then per hidden
        layer ``activations[k] = (kind, slope)`` as in the core, and the
        output (``"logits"``, ``"identity"`` or ``"sigmoid"``)."""

        def __init__(self, layers: list[Any], activations: list[tuple[str, float]], output: str) -> None:
            super().__init__()
            self.layers = nn.ModuleList(layers)
            self.activations = [(str(k), float(s)) for k, s in activations]
            self.output = output

        def forward(self, x: Any) -> Any:
            for layer, (kind, slope) in zip(self.layers, self.activations):
                z = layer(x)
                if kind == "leaky":
                    x = torch.where(z >= 0, z, z * slope)
                elif kind == "tanh":
                    x = torch.tanh(z)
                else:
                    x = torch.sigmoid(z)
            z = self.layers[-1](x)
            return torch.sigmoid(z) if self.output == "sigmoid" else z

        def extra_repr(self) -> str:
            return f"activations={self.activations}, output={self.output!r}"

    _CLASSES.update(SparseLinear=SparseLinear, SparseMLPModule=SparseMLPModule)
    return _CLASSES


def to_torch(model: Any, device: Any = None) -> Any:
    """``model`` as a ``torch.nn.Module`` in inference mode (see the module's
    docstring), on ``device`` (default CPU)."""
    torch = _torch()
    cls = _classes()
    layers = []
    for i, W in enumerate(model.to_scipy()):
        Wt = W.T.tocsr()  # out × in, rows sorted as torch expects
        Wt.sort_indices()
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            weight = torch.sparse_csr_tensor(
                torch.from_numpy(Wt.indptr.astype(np.int64)), torch.from_numpy(Wt.indices.astype(np.int64)),
                torch.from_numpy(Wt.data.astype(np.float32)), size=Wt.shape, dtype=torch.float32,
                check_invariants=True)
        bias = torch.from_numpy(np.array(model.layers[i].bias, dtype=np.float32))
        layers.append(cls["SparseLinear"](weight, bias))
    loss, output = model._net.loss
    module = cls["SparseMLPModule"](layers, model._net.activations,
                                    "logits" if loss == "cross_entropy" else output)
    module.eval()
    if device is None:
        return module
    try:
        return module.to(device)
    except (RuntimeError, ValueError, TypeError, AssertionError) as e:
        raise InvalidInputError(f"cannot put the module on device {device!r}: {e}") from None


_ACTIVATION_MODULES = ("ReLU", "LeakyReLU", "Tanh", "Sigmoid")
_IGNORED_MODULES = ("Dropout", "Identity", "Flatten")


def _activation_of(m: Any) -> tuple[str, float]:
    name = type(m).__name__
    if name == "ReLU":
        return ("leaky", 0.0)
    if name == "LeakyReLU":
        return ("leaky", float(m.negative_slope))
    return ("tanh", 0.0) if name == "Tanh" else ("sigmoid", 0.0)


def _linear_connections(torch: Any, m: Any, where: str, threshold: float | None) -> Any:
    """The scipy CSR matrix (in × out) of an ``nn.Linear``'s connections: its
    pruning mask's ones, else the weights above ``threshold`` in magnitude,
    else (no threshold) its nonzero weights, refusing a fully dense one."""
    from scipy import sparse

    weight = m.weight.detach().to("cpu", torch.float32)
    mask = getattr(m, "weight_mask", None)
    if mask is not None:
        keep = mask.detach().to("cpu") != 0
        original = getattr(m, "weight_orig", None)
        if original is not None:  # `weight` is only refreshed by a forward pass
            weight = original.detach().to("cpu", torch.float32) * keep
    elif threshold is not None:
        keep = weight.abs() > threshold
    else:
        keep = weight != 0
        if bool(keep.all()) and keep.numel() > 1:
            raise InvalidInputError(
                f"{where} is dense (no zero weights, no pruning mask): give threshold= to keep the "
                "weights larger than it in magnitude, or prune it first "
                "(torch.nn.utils.prune.l1_unstructured(layer, 'weight', amount=0.9))")
    keep = keep.numpy()
    rows, cols = np.nonzero(keep.T)  # in × out
    values = weight.numpy().T[rows, cols]
    return sparse.csr_matrix((values.astype(np.float32), (rows, cols)), shape=keep.T.shape)


def from_torch(cls: Any, module: Any, threshold: float | None = None, **kwargs: Any) -> Any:
    """A ``cls`` (SparseMLP) model from ``module`` (see the module's docstring);
    ``kwargs`` go to ``from_scipy`` (``loss``, ``dropout``, ``init``, ``seed``)."""
    torch = _torch()
    classes = _classes()
    if threshold is not None:
        threshold = number("threshold", threshold, 0.0, float("inf"))
    if isinstance(module, classes["SparseMLPModule"]):
        weights, biases = [], []
        from scipy import sparse

        for layer in module.layers:
            w = layer.weight.detach().to("cpu")
            csr = sparse.csr_matrix((w.values().numpy(), w.col_indices().numpy(), w.crow_indices().numpy()),
                                    shape=tuple(w.shape))
            weights.append(csr.T.tocsr())
            biases.append(layer.bias.detach().to("cpu").numpy())
        if module.output == "logits":
            kwargs.setdefault("loss", "cross_entropy")
        else:
            kwargs.setdefault("loss", "mse")
            kwargs.setdefault("output_activation", module.output)
        activations = [CoreActivation(k, s) for k, s in module.activations]
        return cls.from_scipy(weights, biases, activation=activations or "relu", **kwargs)
    if not isinstance(module, torch.nn.Module):
        raise InvalidInputError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    children = list(module.children()) if isinstance(module, torch.nn.Sequential) else [module]
    weights, biases, activations, pending = [], [], [], False
    for i, m in enumerate(children):
        name, where = type(m).__name__, f"layer {i} ({type(m).__name__})"
        if isinstance(m, torch.nn.Linear):
            if weights and not pending:
                raise InvalidInputError(f"{where}: two linear layers without an activation between "
                                        "them; a sparse MLP has one after every hidden layer")
            w = _linear_connections(torch, m, where, threshold)
            if weights and w.shape[0] != weights[-1].shape[1]:
                raise InvalidInputError(f"{where} takes {w.shape[0]} inputs but the previous linear "
                                        f"layer gives {weights[-1].shape[1]}")
            weights.append(w)
            b = m.bias
            biases.append(np.zeros(w.shape[1], np.float32) if b is None
                          else b.detach().to("cpu", torch.float32).numpy())
            pending = False
        elif name in _ACTIVATION_MODULES:
            if not weights or pending:
                raise InvalidInputError(f"{where}: an activation must follow a linear layer")
            activations.append(_activation_of(m))
            pending = True
        elif name in _IGNORED_MODULES:
            continue
        else:
            raise InvalidInputError(
                f"{where} is not supported: from_torch reads nn.Sequential stacks of nn.Linear and "
                f"{', '.join('nn.' + a for a in _ACTIVATION_MODULES)} (Dropout, Identity and Flatten "
                "are skipped), or a module made by SparseMLP.to_torch")
    if not weights:
        raise InvalidInputError("the module holds no nn.Linear layer")
    if pending:
        raise InvalidInputError("the module ends in an activation; the last layer must be "
                                "nn.Linear (its logits; the loss applies softmax)")
    return cls.from_scipy(weights, biases, activation=[CoreActivation(k, s) for k, s in activations]
                          or "relu", **kwargs)
