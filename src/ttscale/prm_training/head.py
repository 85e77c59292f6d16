"""Training the value head (:mod:`ttscale.rewards.value_head_model`: a small MLP or a linear
layer from a hidden state to a step's value, in numpy). Trained with binary cross-entropy on soft
labels (a step's Monte-Carlo success rate), Adam, weight decay, and early stopping on a held-out
split; features are standardised with the training split's statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ttscale.errors import ConfigError
from ttscale.rewards.value_head_model import ValueHead, sigmoid


@dataclass(frozen=True)
class FitSettings:
    hidden: int = 64  # 0: a linear head
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    epochs: int = 400
    batch_size: int = 256
    patience: int = 40  # epochs without a better validation loss before stopping
    seed: int = 0


@dataclass
class FitHistory:
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def fit(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        settings: FitSettings = FitSettings()) -> tuple[ValueHead, FitHistory]:
    """Train a head on features ``x`` and soft labels ``y`` in [0, 1]; keep the weights of the
    epoch with the lowest validation loss."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if len(x) == 0 or len(x_val) == 0:
        raise ConfigError("training needs labelled steps in both the training and the "
                          "validation split; label more problems")
    if np.any((y < 0) | (y > 1)):
        raise ConfigError("labels must lie in [0, 1]")
    rng = np.random.default_rng(settings.seed)
    d = x.shape[1]
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    if settings.hidden:
        params = {"w1": rng.normal(0, np.sqrt(2 / d), (d, settings.hidden)).astype(np.float32),
                  "b1": np.zeros(settings.hidden, np.float32),
                  "w2": rng.normal(0, np.sqrt(1 / settings.hidden),
                                   settings.hidden).astype(np.float32)}
    else:
        params = {"w2": np.zeros(d, np.float32)}
    base_rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    params["b2"] = np.array(np.log(base_rate / (1 - base_rate)), np.float32)
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}

    def head() -> ValueHead:
        return ValueHead(mean, scale, params.get("w1"), params.get("b1"), params["w2"],
                         float(params["b2"]))

    history = FitHistory()
    best = (np.inf, head())
    step = 0
    stale = 0
    for epoch in range(settings.epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), settings.batch_size):
            rows = order[start:start + settings.batch_size]
            grads = _gradients(head(), x[rows], y[rows])
            step += 1
            for name, grad in grads.items():
                if name != "b2" and name != "b1":
                    grad = grad + settings.weight_decay * params[name]
                m, v = moments[name]
                m[...] = 0.9 * m + 0.1 * grad
                v[...] = 0.999 * v + 0.001 * grad * grad
                m_hat = m / (1 - 0.9 ** step)
                v_hat = v / (1 - 0.999 ** step)
                params[name] = params[name] - settings.learning_rate * m_hat / (
                    np.sqrt(v_hat) + 1e-8)
        train_loss = bce(head().logits(x), y)
        validation_loss = bce(head().logits(x_val), np.asarray(y_val, np.float32))
        history.train_loss.append(train_loss)
        history.validation_loss.append(validation_loss)
        if validation_loss < best[0] - 1e-5:
            best = (validation_loss, _copy(head()))
            history.best_epoch = epoch
            stale = 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    return best[1], history


def _gradients(head: ValueHead, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    logits, z, hidden = head._forward(x)
    error = (sigmoid(logits) - y) / len(x)  # d(mean BCE)/d(logit)
    grads = {"b2": np.array(error.sum(), np.float32)}
    if hidden is None:
        grads["w2"] = z.T @ error
        return grads
    grads["w2"] = hidden.T @ error
    back = np.outer(error, head.w2) * (hidden > 0)
    grads["w1"] = z.T @ back
    grads["b1"] = back.sum(axis=0)
    return grads


def _copy(head: ValueHead) -> ValueHead:
    return ValueHead(head.mean.copy(), head.scale.copy(),
                     None if head.w1 is None else head.w1.copy(),
                     None if head.b1 is None else head.b1.copy(), head.w2.copy(), head.b2)


def bce(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of soft labels, from logits (stable)."""
    return float(np.mean(np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when one class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))
