"""Small solvers over the probability simplex, shared by MGDA and CAGrad.

They work on ``M x M`` float64 numpy arrays on the host: the problems have a few dozen variables
and many short, data-dependent iterations, for which one host copy of the Gramian per step is far
cheaper than launching tiny device kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def project_simplex(y: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``y`` onto ``{w >= 0, sum w = 1}`` (sort-based, exact).

    The projection does not change when a constant is added to every entry; subtracting the
    largest first keeps the test below exact for its first entry, which with entries ~1e17
    (``cumsum - 1`` rounding to ``cumsum``) otherwise found no support at all."""
    if not np.isfinite(y).all():
        raise ValueError(f"cannot project a non-finite vector onto the simplex: {y}")
    y = y - y.max()
    u = np.sort(y)[::-1]
    cumulative = np.cumsum(u) - 1.0
    index = np.arange(1, y.shape[0] + 1)
    rho = np.nonzero(u - cumulative / index > 0)[0][-1]
    return np.maximum(y - cumulative[rho] / (rho + 1), 0.0)


def minimise_on_simplex(
    value: Callable[[np.ndarray], float],
    gradient: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    *,
    max_iter: int = 5000,
    tol: float = 1e-12,
    finish: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> np.ndarray:
    """Accelerated projected gradient (FISTA with backtracking and adaptive restart) for a
    smooth convex function on the simplex. Stops when the iterate is a fixed point, to ``tol``,
    of the projected-gradient map with a step normalised by the gradient's size (a test of
    optimality that, unlike the iterates' movement, does not depend on the adaptive step), when
    no step decreases the value any more (machine precision), or when ``finish(x)``, tried every
    20 iterations, returns a final answer."""
    x = project_simplex(start)
    y, t, step = x.copy(), 1.0, 1.0
    fx = value(x)
    for iteration in range(max_iter):
        g = gradient(x)
        if np.abs(x - project_simplex(x - g / max(np.abs(g).max(), 1e-300))).sum() < tol:
            break
        if finish is not None and iteration % 20 == 19:
            final = finish(x)
            if final is not None:
                return final
        gy, fy = gradient(y), value(y)
        while True:
            candidate = project_simplex(y - step * gy)
            diff = candidate - y
            fc = value(candidate)
            if fc <= fy + gy @ diff + (diff @ diff) / (2 * step) + 1e-14 * abs(fy) or step < 1e-30:
                break
            step *= 0.5
        if fc > fx:  # adaptive restart keeps the iterates monotone: a plain step from x
            y, t = x.copy(), 1.0
            while step > 1e-30:
                candidate = project_simplex(x - step * g)
                fc = value(candidate)
                if fc <= fx:
                    break
                step *= 0.5
            if fc > fx:  # no step decreases the value any more: optimal to machine precision
                break
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = candidate + ((t - 1) / t_next) * (candidate - x)
        x, fx, t = candidate, fc, t_next
        step *= 2.0
    return x


def min_norm_weights(gram: np.ndarray, *, max_iter: int = 5000, tol: float = 1e-13) -> np.ndarray:
    """Simplex weights of the minimum-norm point of the convex hull: ``argmin w^T G w``."""
    m = gram.shape[0]
    if m == 1:
        return np.ones(1)
    scale = max(np.abs(gram).max(), 1e-300)
    g = gram / scale  # the minimiser does not depend on the scale; the step sizes do

    def optimal(w: np.ndarray) -> np.ndarray | None:
        """The exact solution on ``w``'s support, if it satisfies every optimality condition."""
        exact = _polish(g, w)
        g_w = g @ exact
        return exact if (g_w >= exact @ g_w - 1e-12).all() else None

    w = minimise_on_simplex(
        lambda w: w @ g @ w, lambda w: 2 * g @ w, np.full(m, 1.0 / m), max_iter=max_iter, tol=tol, finish=optimal
    )
    return _polish(g, w)


def _polish(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Solve the optimality system exactly on the support found by the iterative solver
    (``G_SS w_S = lambda 1``, ``sum w_S = 1``); keep it if it is feasible and no worse."""
    support = np.nonzero(w > 1e-9)[0]
    k = support.size
    system = np.zeros((k + 1, k + 1))
    system[:k, :k] = g[np.ix_(support, support)]
    system[:k, k] = -1.0
    system[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    solution = np.linalg.lstsq(system, rhs, rcond=None)[0][:k]
    if (solution < 0).any() or abs(solution.sum() - 1) > 1e-12:
        return w
    polished = np.zeros_like(w)
    polished[support] = solution
    return polished if polished @ g @ polished <= w @ g @ w + 1e-15 else w
