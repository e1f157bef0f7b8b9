"""Figures of a run (matplotlib, the optional ``plot`` extra):

- :func:`plot_learning_curves`: loss and accuracy per epoch, training and validation;
- :func:`plot_connections`: connections per layer over the epochs;
- :func:`plot_importance`: histogram of the neurons' importance per hidden layer;
- :func:`plot_input_connectivity`: connections per input feature as an image
  (for image data, per pixel: the SET paper's figure);
- :func:`plot_run`: all of them from a model or a saved model file.

Each function draws into ``ax`` when given one and otherwise makes a figure;
``plot_run`` writes PNG files.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import InvalidInputError, SparseMLPError
from .model import SparseMLP


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SparseMLPError(
            "plots need matplotlib: pip install 'sparse_mlp[plot]' (or pip install matplotlib)"
        ) from None
    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax: Any, n: int = 1, width: float = 6.0) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    if ax is not None:
        axes = list(np.atleast_1d(ax))
        return axes[0].figure, axes
    fig, axes = plt.subplots(1, n, figsize=(width * n, 4), squeeze=False)
    return fig, list(axes[0])


def plot_learning_curves(history: list[dict[str, Any]], ax: Any = None) -> Any:
    """Loss (left) and accuracy (right) per epoch; ``ax``: two axes."""
    fig, (loss_ax, acc_ax) = _axes(ax, 2)
    epochs = [r["epoch"] for r in history]
    for key, axis in (("loss", loss_ax), ("accuracy", acc_ax)):
        axis.plot(epochs, [r[key] for r in history], label="training")
        if any(f"val_{key}" in r for r in history):
            pts = [(r["epoch"], r[f"val_{key}"]) for r in history if f"val_{key}" in r]
            axis.plot(*zip(*pts), label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.legend()
    return fig


def plot_connections(history: list[dict[str, Any]], ax: Any = None) -> Any:
    """Connections of each layer per epoch (the total when the history has no
    per-layer counts)."""
    fig, (axis,) = _axes(ax)
    epochs = [r["epoch"] for r in history]
    if all("layer_connections" in r for r in history) and history:
        per_layer = np.array([r["layer_connections"] for r in history])
        for i in range(per_layer.shape[1]):
            axis.plot(epochs, per_layer[:, i], label=f"layer {i}")
        axis.legend()
    else:
        axis.plot(epochs, [r["n_connections"] for r in history], label="all layers")
    axis.set_xlabel("epoch")
    axis.set_ylabel("connections")
    return fig


def plot_importance(model: SparseMLP, bins: int = 50, ax: Any = None) -> Any:
    """Histogram of neuron importance (sum of absolute incoming weights) in
    each hidden layer."""
    hidden = model.layers[:-1] or model.layers
    fig, axes = _axes(ax, len(hidden), width=4.0)
    for layer, axis in zip(hidden, axes):
        axis.hist(layer.importance(), bins=bins)
        axis.set_title(f"layer {layer.index}: {layer.shape[1]} neurons")
        axis.set_xlabel("importance")
    axes[0].set_ylabel("neurons")
    return fig


# Input sizes known to be images when no shape is given: MNIST-like and CIFAR.
_IMAGES = {784: (28, 28), 3072: (3, 32, 32)}


def input_connectivity(model: SparseMLP, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Connections per input feature of the first layer. Shaped as an image
    for image data: ``image_shape`` when given (e.g. ``(28, 28)``, or
    ``(3, 32, 32)`` whose channels are summed), else 28×28 for 784 features
    and 32×32 summed over 3 channels for 3072. Other inputs (tables) give one
    count per feature, a 1-D array."""
    st = model._net.layer_state(0)
    counts = np.bincount(st["row_idx"], minlength=model.n_features)
    n = model.n_features
    if image_shape is None:
        image_shape = _IMAGES.get(n)
        if image_shape is None:
            return counts
    if len(image_shape) not in (2, 3):
        raise InvalidInputError(f"image_shape {image_shape} must be (height, width) or "
                                "(channels, height, width)")
    if int(np.prod(image_shape)) != n:
        raise SparseMLPError(f"image_shape {image_shape} does not hold the model's {n} input features")
    image = counts.reshape(image_shape)
    return image.sum(axis=0) if image.ndim == 3 else image


def plot_input_connectivity(model: SparseMLP, image_shape: tuple[int, ...] | None = None,
                            ax: Any = None) -> Any:
    """The input layer's connections per feature: as an image for image data
    (per pixel: the SET paper's figure), else per feature number (column of
    the data, counted from 1)."""
    counts = input_connectivity(model, image_shape)
    if counts.ndim == 1:
        fig, (axis,) = _axes(ax, 1, width=8.0)
        features = np.arange(1, counts.size + 1)
        if counts.size <= 200:
            axis.bar(features, counts, width=1.0)
        else:
            axis.plot(features, counts, linewidth=0.6)
        axis.set_xlim(0.5, counts.size + 0.5)
        axis.set_xlabel("input feature (column of the data)")
        axis.set_ylabel("connections")
        axis.set_title(f"connections per input feature ({counts.size} features)")
        return fig
    fig, (axis,) = _axes(ax, 1, width=5.0)
    shown = axis.imshow(counts, cmap="viridis")
    fig.colorbar(shown, ax=axis, label="connections")
    axis.set_title("connections per input pixel")
    return fig


def plot_run(source: SparseMLP | str | os.PathLike, directory: str | os.PathLike,
             image_shape: tuple[int, ...] | None = None) -> list[str]:
    """Writes ``learning_curves.png``, ``connections.png``, ``importance.png``
    and ``input_connectivity.png`` for a model or a saved model file into
    ``directory``; returns the paths."""
    plt = _pyplot()
    model = source if isinstance(source, SparseMLP) else SparseMLP.load(source)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    figures = {"input_connectivity": plot_input_connectivity(model, image_shape),
               "importance": plot_importance(model)}
    if model.history:
        figures["learning_curves"] = plot_learning_curves(model.history)
        figures["connections"] = plot_connections(model.history)
    paths = []
    for name, fig in figures.items():
        path = os.path.join(directory, f"{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return sorted(paths)
