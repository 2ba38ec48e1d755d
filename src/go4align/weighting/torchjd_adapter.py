"""Any TorchJD aggregator behind go4align's protocol (optional extra ``torchjd``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from .gradient import Aggregation, GradientWeighting, combination

__all__ = ["TorchJD"]


class TorchJD(GradientWeighting):
    """Use a TorchJD aggregator (UPGrad, DualProj, ConFIG, GradVac, ...) as a gradient method.

    The Jacobian collected by :class:`~go4align.weighting.gradient.GradientWeighting` is handed to
    the aggregator. When it is a ``WeightedAggregator`` (most are: the aggregation is a weighted
    sum of the task gradients), its weighting gives the task weights, which are returned, may be
    post-processed and, with ``head_gradients="weighted"``, reach the heads; otherwise (ConFIG,
    GradDrop, Krum, TrimmedMean) its output is the shared direction, no weights are returned and
    the heads get the plain summed gradient. An aggregator that fails in the Jacobian's dtype
    (non-finite, or a zero direction from gradients that are not zero, as float32 gives for
    gradients 1e30 apart in size) runs once more on the float64 Jacobian; a non-finite result
    then raises a ``ValueError`` naming the step, and a zero direction warns. TorchJD's own randomness (its PCGrad, Random) uses
    torch's global generator. TorchJD (https://github.com/SimplexLab/TorchJD, MIT) is a
    fast-moving 0.x library; the extra pins the tested range.

    Args:
        num_tasks: ``M``.
        aggregator: a ``torchjd.aggregation.Aggregator`` instance, or the name of one of its
            classes built with default arguments. Default ``"ConFIG"``: a method go4align does not
            implement itself that needs nothing beyond torch. UPGrad and DualProj need TorchJD's
            ``quadprog-projector`` extra, which pulls the GPL ``quadprog`` package; go4align's
            extras do not install it.
        target, head_gradients, jacobian, max_norm, validate: see
            :class:`~go4align.weighting.gradient.GradientWeighting`.

    Needs torchjd: ``pip install 'go4align[torchjd]'``; checked when the object is built.
    """

    def __init__(
        self,
        num_tasks: int,
        aggregator: object = "ConFIG",
        *,
        target: str = "parameters",
        head_gradients: str = "weighted",
        jacobian: str = "auto",
        max_norm: float = 0.0,
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
        try:
            from torchjd import aggregation
        except ImportError as error:
            raise ImportError("TorchJD needs torchjd: pip install 'go4align[torchjd]'") from error
        if isinstance(aggregator, str):
            cls = getattr(aggregation, aggregator, None)
            if not (isinstance(cls, type) and issubclass(cls, aggregation.Aggregator)):
                raise ValueError(f"aggregator must name a torchjd.aggregation.Aggregator class, got {aggregator!r}")
            try:
                aggregator = cls()
            except TypeError as error:
                raise ValueError(
                    f"aggregator={aggregator!r} needs arguments: pass an instance instead ({error})"
                ) from error
        elif not isinstance(aggregator, aggregation.Aggregator):
            raise ValueError(f"aggregator must be a torchjd Aggregator or the name of one, got {aggregator!r}")
        self.aggregator = aggregator
        self._weighted = isinstance(aggregator, aggregation.WeightedAggregator)

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        aggregation = self._run(jacobian)
        if not self._usable(aggregation, jacobian) and jacobian.dtype != torch.float64:
            # gradients far apart in size (losses spanning 1e-30..1e30) underflow or overflow
            # inside the aggregator in float32: once more in float64
            weights, direction, _ = self._run(jacobian.to(torch.float64))
            aggregation = Aggregation(weights, direction.to(jacobian.dtype))
        result = aggregation.weights if aggregation.weights is not None else aggregation.direction
        if not bool(torch.isfinite(result).all()):
            raise ValueError(
                f"TorchJD: {type(self.aggregator).__name__} gave non-finite "
                f"{'weights' if aggregation.weights is not None else 'direction'} at step {self.step}"
            )
        if not self._usable(aggregation, jacobian):
            warnings.warn(
                f"TorchJD: {type(self.aggregator).__name__} gave a zero direction at step {self.step} although "
                "the task gradients are not zero: the shared parameters receive no gradient",
                RuntimeWarning,
                stacklevel=4,
            )
        return aggregation

    def _run(self, jacobian: Tensor) -> Aggregation:
        """The weights (with their direction ``w @ J``, formed here to be checked, not again
        later), or the direction alone."""
        with torch.no_grad():
            if self._weighted:
                weights = self.aggregator.weighting(jacobian).to(torch.float64)
                return Aggregation(weights, combination(weights, jacobian))
            return Aggregation(None, self.aggregator(jacobian))

    @staticmethod
    def _usable(aggregation: Aggregation, jacobian: Tensor) -> bool:
        """A finite result, and a nonzero direction when some task gradient is nonzero."""
        direction = aggregation.direction
        if not bool(torch.isfinite(direction).all()):
            return False
        return bool((direction != 0).any()) or not bool((jacobian != 0).any())
