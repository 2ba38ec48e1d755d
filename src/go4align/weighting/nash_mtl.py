"""Nash-MTL, multi-task learning as a bargaining game (Navon et al., ICML 2022, arXiv 2202.01017)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_int
from .gradient import Aggregation, GradientWeighting, gramian

__all__ = ["NashMTL", "NashProblem", "nash_mtl_weights"]


class NashMTL(GradientWeighting):
    r"""Nash bargaining solution: weights :math:`\alpha > 0` with :math:`G^\top G \alpha = 1 / \alpha`.

    ``G`` holds the task gradients as columns. The reference finds :math:`\alpha` by a sequence of
    convex problems (a concave-convex procedure): with the Gramian normalised by its Frobenius
    norm :math:`n`, :math:`K = G^\top G / n`, each iteration solves

    .. math:: \min_{\alpha \ge 0} \mathbf 1^\top K \alpha + \varphi'(\alpha_t)^\top \alpha / n
              \quad \text{s.t.} \quad \log \alpha_i + \log (K \alpha)_i \ge -\log n,

    :math:`\varphi'(\alpha_t) = 1/\alpha_t + K^\top (1 / K \alpha_t)`, from the previous step's
    weights (all ones at the start), for at most ``optim_niter`` iterations, stopping early when an
    iteration changes :math:`\alpha` by less than ``1e-6`` (the reference's other stopping test,
    :math:`\|K \alpha_t - 1/\alpha_t\| < 10^{-3}`, is kept as is: it mixes the normalised and the
    unnormalised Gramian, so it practically never fires), and keeps the last iterate before the
    stop. The loss :math:`\sum_m \alpha_m L_m` is back-propagated (heads see the weights) and the
    gradient it adds to the shared parameters is clipped to norm ``max_norm``.
    Paper: https://arxiv.org/abs/2202.01017.

    Differences from the reference code, on purpose:

    * solver: Clarabel (Apache-2.0) by default instead of ECOS (GPL-3.0); any exponential-cone
      solver installed for cvxpy can be named. The problem is written in cvxpy's DPP form (the
      linearisation is passed as one parameter vector, the log-normaliser moved to the right-hand
      side): the same problem, compiled once instead of at every solve.
    * a solver failure (``cvxpy.error.SolverError``) or a non-optimal status keeps the previous
      weights, as the reference's bare ``except`` and ``value is None`` test did (initially all
      ones: seen with ``M = 5`` at the first step), but only solver errors are caught, and
      ``diagnostics["solver_failed"]`` says when it happened;
    * clipping acts on the gradient this call adds to the shared parameters; the reference clips
      their whole ``.grad``, which is the same after ``zero_grad()``.

    Args:
        num_tasks: ``M``.
        max_norm: clip norm of the shared gradient (``0`` disables; reference 1.0; else at least
            float32's smallest normal number, ~1.2e-38, below which clipping writes zeros). Needs
            ``shared_parameters`` when positive, whatever the target.
        update_weights_every: recompute the weights every ``k`` steps, reusing them (and skipping
            the Jacobian) in between (reference 1).
        optim_niter: maximum convex solves per update (reference 20).
        solver: cvxpy solver name (default ``"CLARABEL"``; ``"SCS"`` also works).
        target, head_gradients, jacobian, validate: see
            :class:`~go4align.weighting.gradient.GradientWeighting`.

    Needs cvxpy: ``pip install 'go4align[nashmtl]'``; checked when the object is built.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        optim_niter: int = 20,
        solver: str = "CLARABEL",
        target: str = "parameters",
        head_gradients: str = "weighted",
        jacobian: str = "auto",
        validate: bool = True,
    ):
        super().__init__(
            num_tasks,
            target=target,
            head_gradients=head_gradients,
            jacobian=jacobian,
            max_norm=max_norm,
            validate=validate,
        )
        self.update_weights_every = check_int("update_weights_every", update_weights_every, 1)
        self.optim_niter = check_int("optim_niter", optim_niter, 1)
        try:
            import cvxpy as cp
        except ImportError as error:
            raise ImportError("NashMTL needs cvxpy: pip install 'go4align[nashmtl]'") from error
        if not isinstance(solver, str) or solver.upper() not in cp.installed_solvers():
            raise ValueError(
                f"solver must be one of cvxpy's installed solvers {cp.installed_solvers()}, got {solver!r}"
            )
        self.solver = solver.upper()
        self._problem = NashProblem(num_tasks, self.solver)
        self.register_buffer("alpha", torch.ones(self.num_tasks, dtype=torch.float64))

    # The compiled cvxpy problem holds solver objects that cannot be copied or pickled: it is
    # left out of copies and rebuilt.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_problem"}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._problem = NashProblem(self.num_tasks, self.solver)

    def reuse(self) -> Aggregation | None:
        if self.step % self.update_weights_every == 0:
            return None
        return Aggregation(self.alpha.clone(), None, {"updated": torch.zeros((), device=self.alpha.device)})

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        gram = gramian(jacobian).cpu().numpy()
        zero = np.nonzero(np.diagonal(gram) == 0)[0].tolist()
        if zero and np.isfinite(gram).all() and gram.any():
            warnings.warn(
                f"NashMTL: task(s) {zero} have a zero shared gradient at step {self.step}, so no "
                "bargaining solution exists; the previous weights are kept (diagnostics['solver_failed'])",
                RuntimeWarning,
                stacklevel=3,
            )
        alpha, failed = nash_mtl_weights(gram, self.alpha.cpu().numpy(), self._problem, optim_niter=self.optim_niter)
        self.alpha.copy_(torch.as_tensor(alpha, dtype=torch.float64))
        extras = {
            "updated": torch.ones((), device=self.alpha.device),
            "solver_failed": torch.tensor(float(failed), device=self.alpha.device),
        }
        return Aggregation(self.alpha.clone(), None, extras)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, update_weights_every={self.update_weights_every}, "
            f"optim_niter={self.optim_niter}, solver={self.solver!r}"
        )


class NashProblem:
    """The convex sub-problem of Nash-MTL's concave-convex procedure (see :class:`NashMTL`),
    compiled once by cvxpy with the normalised Gramian, the linearisation and the constraint's
    right-hand side as parameters (cvxpy's DPP form)."""

    def __init__(self, num_tasks: int, solver: str):
        import cvxpy as cp

        m, self.solver = num_tasks, solver
        self.alpha = cp.Variable(m, nonneg=True)
        self.gram = cp.Parameter((m, m))
        self.linear = cp.Parameter(m)
        self.floor = cp.Parameter(m)
        k_alpha = self.gram @ self.alpha
        objective = cp.Minimize(cp.sum(k_alpha) + self.linear @ self.alpha)
        self.problem = cp.Problem(objective, [cp.log(self.alpha) + cp.log(k_alpha) >= self.floor])
        # cvxpy's first solve compiles the problem and gives answers a few 1e-9 away from the later,
        # cached solves: solve once here so that every real solve takes the same path and a run
        # resumed from a checkpoint continues bit-identically.
        self.gram.value, self.linear.value, self.floor.value = np.eye(m), np.ones(m), np.zeros(m)
        self.problem.solve(solver=solver)

    def solve(self, start: np.ndarray) -> np.ndarray | None:
        """The solution warm-started at ``start``, or ``None`` when the solver fails."""
        import cvxpy as cp

        self.alpha.value = start
        try:
            self.problem.solve(solver=self.solver, warm_start=True)
        except cp.error.SolverError:
            return None
        return self.alpha.value if self.problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) else None


def nash_mtl_weights(
    gram: np.ndarray, alpha: np.ndarray, problem: NashProblem, *, optim_niter: int = 20
) -> tuple[np.ndarray, bool]:
    """Nash-MTL's weights for the unnormalised float64 Gramian ``gram``, iterating from the
    previous weights ``alpha``; and whether a solve failed (the previous weights are then kept,
    as the reference does). See :class:`NashMTL` for the iteration and its stopping tests."""
    norm = float(np.linalg.norm(gram))
    if not np.isfinite(norm) or norm == 0 or (np.diagonal(gram) == 0).any():
        # no gradient to bargain over, or G^T G alpha = 1 / alpha has no solution
        return alpha, True
    k = gram / norm
    problem.gram.value = k
    problem.floor.value = np.full(gram.shape[0], -np.log(norm))
    failed = False
    for _ in range(optim_niter):
        linear = (1 / alpha + (1 / (k @ alpha)) @ k) / norm
        if not np.isfinite(linear).all():  # gradients too far apart in size for float64
            return alpha, True
        problem.linear.value = linear
        new = problem.solve(alpha)
        failed = failed or new is None
        if new is None or np.linalg.norm(k @ alpha - 1 / (alpha + 1e-10)) < 1e-3 or np.linalg.norm(new - alpha) < 1e-6:
            break
        alpha = new
    return alpha, failed
