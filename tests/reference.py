"""A naive dense numpy implementation of the same math, in float64."""

import numpy as np


def act(kind, slope, z):
    if kind == "leaky":
        return np.where(z >= 0, z, slope * z), np.where(z >= 0, 1.0, slope)
    if kind == "tanh":
        a = np.tanh(z)
        return a, 1 - a * a
    if kind == "sigmoid":
        a = 1 / (1 + np.exp(-z))
        return a, a * (1 - a)
    raise ValueError(kind)


def forward(layers, acts, X):
    """Every layer's input, the hidden layers' derivatives and the output
    pre-activations, in float64 (no dropout)."""
    a = [X.astype(np.float64)]
    derivs = []
    for (W, b), (kind, slope) in zip(layers[:-1], acts):
        h, d = act(kind, slope, a[-1] @ W + b)
        a.append(h)
        derivs.append(d)
    W, b = layers[-1]
    return a, derivs, a[-1] @ W + b


def loss_and_grads(layers, acts, X, y, loss="cross_entropy", output="softmax"):
    """Mean loss and dense gradients [(dW, db)] for a full batch, no dropout."""
    a, derivs, z = forward(layers, acts, X)
    n, c = z.shape
    onehot = np.eye(c)[y]
    if loss == "cross_entropy":
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        value = -np.log(p[np.arange(n), y]).mean()
        delta = (p - onehot) / n
    else:
        o = 1 / (1 + np.exp(-z)) if output == "sigmoid" else z
        value = ((o - onehot) ** 2).mean()
        slope = o * (1 - o) if output == "sigmoid" else 1.0
        delta = 2 * (o - onehot) / (n * c) * slope
    grads = [None] * len(layers)
    for lay in range(len(layers) - 1, -1, -1):
        W, _ = layers[lay]
        grads[lay] = (a[lay].T @ delta, delta.sum(axis=0))
        if lay > 0:
            delta = (delta @ W.T) * derivs[lay - 1]
    return value, grads


def sgd(layers, grads, velocity, lr, mu, wd, nesterov=False, bias_decay=True):
    """The papers' update on dense copies, masked to existing connections."""
    new_layers, new_velocity = [], []
    for (W, b), (gW, gb), (vW, vb), in zip(layers, grads, velocity):
        mask = W != 0
        gW = gW * mask
        vW = mu * vW - lr * gW
        vb = mu * vb - lr * gb
        uW = mu * vW - lr * gW if nesterov else vW
        ub = mu * vb - lr * gb if nesterov else vb
        new_layers.append((W + uW - wd * W, b + ub - (wd * b if bias_decay else 0)))
        new_velocity.append((vW, vb))
    return new_layers, new_velocity
