"""Training the matcher's model, without scikit-learn: a multinomial logistic regression trained with
L-BFGS on scipy.sparse matrices (step 4 of `calsync.knowledge.matcher`). Only training imports this
module (numpy and scipy); answering with a trained model is plain Python (`Matcher.match_many`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import sparse

from calsync.knowledge.tfidf import TfidfBlock

__all__ = ["FloatArray", "IntArray", "TfidfBlock", "softmax", "train_softmax"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# -- the classifier -------------------------------------------------------------------------------


def softmax(scores: FloatArray) -> FloatArray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _lbfgs(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    start: FloatArray,
    max_iterations: int,
    tolerance: float = 1e-5,
    memory: int = 10,
) -> FloatArray:
    """Minimise a smooth convex function: L-BFGS with a backtracking (Armijo) line search."""
    x = start
    value, gradient = objective(x)
    history: list[tuple[FloatArray, FloatArray, float]] = []
    for _ in range(max_iterations):
        if float(np.abs(gradient).max()) < tolerance:
            break
        q = gradient.copy()
        alphas: list[float] = []
        for s, y, rho in reversed(history):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        if history:
            s, y, _ = history[-1]
            q *= float(s @ y) / float(y @ y)
        else:
            q /= max(1.0, float(np.linalg.norm(q)))
        for (s, y, rho), alpha in zip(history, reversed(alphas), strict=True):
            beta = rho * float(y @ q)
            q += (alpha - beta) * s
        direction = -q
        slope = float(gradient @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            history.clear()
            direction = -gradient
            slope = -float(gradient @ gradient)
        step = 1.0
        for _ in range(30):
            candidate = x + step * direction
            new_value, new_gradient = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s_k, y_k = candidate - x, new_gradient - gradient
        curvature = float(s_k @ y_k)
        if curvature > 1e-12:
            history.append((s_k, y_k, 1.0 / curvature))
            if len(history) > memory:
                history.pop(0)
        if value - new_value < 1e-10 * max(1.0, abs(value)):
            x, value, gradient = candidate, new_value, new_gradient
            break
        x, value, gradient = candidate, new_value, new_gradient
    return x


def train_softmax(
    features: sparse.csr_matrix,
    labels: IntArray,
    classes: int,
    l2: float,
    sample_weight: FloatArray,
    max_iterations: int,
) -> tuple[FloatArray, FloatArray]:
    """Multinomial logistic regression: weighted mean log loss + l2/2 * |W|^2 (bias unpenalised)."""
    n, d = features.shape
    transposed = features.T.tocsr()
    targets = np.zeros((n, classes))
    targets[np.arange(n), labels] = 1.0
    weights = sample_weight / sample_weight.sum()

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        w = theta[: d * classes].reshape(d, classes)
        b = theta[d * classes :]
        scores = features @ w + b
        scores -= scores.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scores).sum(axis=1))
        log_p = scores - log_norm[:, None]
        loss = -float((weights * (log_p * targets).sum(axis=1)).sum()) + 0.5 * l2 * float((w * w).sum())
        residual = (np.exp(log_p) - targets) * weights[:, None]
        grad_w = transposed @ residual + l2 * w
        grad_b = residual.sum(axis=0)
        return loss, np.concatenate([np.asarray(grad_w).ravel(), grad_b])

    theta = _lbfgs(objective, np.zeros(d * classes + classes), max_iterations)
    return theta[: d * classes].reshape(d, classes).copy(), theta[d * classes :].copy()
