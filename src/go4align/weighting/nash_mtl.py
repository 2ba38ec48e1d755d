"""Nash-MTL, multi-task learning as a bargaining game (Navon et al., ICML 2022, arXiv 2202.01017)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_int, check_max_norm
from .base import check_parameters
from .gradient import Aggregation, GradientWeighting, gramian

__all__ = ["NashMTL"]


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
        target, head_gradients, batched, validate: see
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
        batched: bool = False,
        validate: bool = True,
    ):
        super().__init__(num_tasks, target=target, head_gradients=head_gradients, batched=batched, validate=validate)
        self.max_norm = check_max_norm(max_norm)
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
        self._build_problem()
        self.register_buffer("alpha", torch.ones(self.num_tasks, dtype=torch.float64))

    def _build_problem(self) -> None:
        import cvxpy as cp

        m = self.num_tasks
        self._alpha = cp.Variable(m, nonneg=True)
        self._gram = cp.Parameter((m, m))
        self._linear = cp.Parameter(m)
        self._floor = cp.Parameter(m)
        k_alpha = self._gram @ self._alpha
        objective = cp.Minimize(cp.sum(k_alpha) + self._linear @ self._alpha)
        self._problem = cp.Problem(objective, [cp.log(self._alpha) + cp.log(k_alpha) >= self._floor])
        # cvxpy's first solve compiles the problem and gives answers a few 1e-9 away from the later,
        # cached solves: solve once here so that every real solve takes the same path and a run
        # resumed from a checkpoint continues bit-identically.
        self._gram.value, self._linear.value, self._floor.value = np.eye(m), np.ones(m), np.zeros(m)
        self._problem.solve(solver=self.solver)

    # The compiled cvxpy problem holds solver objects that cannot be copied or pickled: it is
    # left out of copies and rebuilt.
    _PROBLEM = ("_problem", "_alpha", "_gram", "_linear", "_floor")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._PROBLEM}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._build_problem()

    def solve(self, gram: np.ndarray) -> tuple[np.ndarray, bool]:
        """Weights for the unnormalised Gramian ``gram``, from the previous ones; and whether a
        solve failed."""
        import cvxpy as cp

        norm = float(np.linalg.norm(gram))
        alpha = self.alpha.cpu().numpy()
        if not np.isfinite(norm) or norm == 0:  # no gradient to bargain over: keep the weights
            return alpha, True
        zero = np.nonzero(np.diagonal(gram) == 0)[0].tolist()
        if zero:  # G^T G alpha = 1 / alpha has no solution: keep the weights, and say so
            warnings.warn(
                f"NashMTL: task(s) {zero} have a zero shared gradient at step {self.step}, so no "
                "bargaining solution exists; the previous weights are kept (diagnostics['solver_failed'])",
                RuntimeWarning,
                stacklevel=5,
            )
            return alpha, True
        k = gram / norm
        self._gram.value = k
        self._floor.value = np.full(self.num_tasks, -np.log(norm))
        failed = False
        for _ in range(self.optim_niter):
            linear = (1 / alpha + (1 / (k @ alpha)) @ k) / norm
            if not np.isfinite(linear).all():  # gradients too far apart in size for float64
                return alpha, True
            self._linear.value = linear
            self._alpha.value = alpha
            try:
                self._problem.solve(solver=self.solver, warm_start=True)
                ok = self._problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
            except cp.error.SolverError:
                ok = False
            new = self._alpha.value if ok else None
            failed = failed or new is None
            if (
                new is None
                or np.linalg.norm(k @ alpha - 1 / (alpha + 1e-10)) < 1e-3
                or np.linalg.norm(new - alpha) < 1e-6
            ):
                break
            alpha = new
        return alpha, failed

    def reuse(self) -> Aggregation | None:
        if self.step % self.update_weights_every == 0:
            return None
        return Aggregation(self.alpha.clone(), None, {"updated": torch.zeros((), device=self.alpha.device)})

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        gram = gramian(jacobian)
        alpha, failed = self.solve(gram.cpu().numpy())
        self.alpha.copy_(torch.as_tensor(alpha, dtype=torch.float64))
        extras = {
            "updated": torch.ones((), device=self.alpha.device),
            "solver_failed": torch.tensor(float(failed), device=self.alpha.device),
        }
        return Aggregation(self.alpha.clone(), None, extras)

    def backward(
        self,
        losses: Tensor,
        *,
        shared_parameters: Sequence[Tensor] | None = None,
        shared_representation: Tensor | None = None,
        retain_graph: bool = False,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> Tensor:
        if self.max_norm == 0:
            return super().backward(
                losses,
                shared_parameters=shared_parameters,
                shared_representation=shared_representation,
                retain_graph=retain_graph,
                grad_scaler=grad_scaler,
            )
        if shared_parameters is None:
            raise ValueError("NashMTL with max_norm > 0 needs shared_parameters=... (the clipped gradients)")
        params = check_parameters(shared_parameters)
        before = [None if p.grad is None else p.grad.clone() for p in params]
        weights = super().backward(
            losses,
            shared_parameters=params,
            shared_representation=shared_representation,
            retain_graph=retain_graph,
            grad_scaler=grad_scaler,
        )
        added = [
            (p.grad if prior is None else p.grad - prior, prior)
            for p, prior in zip(params, before)
            if p.grad is not None
        ]
        if not added:
            return weights
        # in float64: squares of float32 gradients above ~1e19 overflow, and an infinite norm
        # would clip the gradient to zero
        norms = [torch.linalg.vector_norm(a, dtype=torch.float64) for a, _ in added]
        norm = torch.linalg.vector_norm(torch.stack(norms))
        # scaled gradients (grad_scaler) are clipped to the scaled norm
        scale = grad_scaler.get_scale() if grad_scaler is not None and grad_scaler.is_enabled() else 1.0
        factor = (self.max_norm * scale / (norm + 1e-6 * scale)).clamp(max=1.0).to(added[0][0].dtype)
        for p, (a, prior) in zip([p for p in params if p.grad is not None], added):
            if prior is None:
                p.grad.mul_(factor)
            else:
                p.grad.copy_(prior + a * factor)
        self.diagnostics["shared_grad_norm"] = norm.detach()
        return weights

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, max_norm={self.max_norm}, update_weights_every={self.update_weights_every}, "
            f"optim_niter={self.optim_niter}, solver={self.solver!r}"
        )
