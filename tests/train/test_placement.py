import torch

from go4align.train.placement import Placement


class Blocks:
    """A batch type of a benchmark's own, like QM9's padded graph blocks."""

    def to(self, device):
        moved = Blocks()
        moved.device = device
        return moved


def test_batch_moves_tensors_and_objects_that_move_themselves():
    inputs, targets = Placement("cpu").batch((Blocks(), {"y": torch.zeros(2)}))
    assert inputs.device == torch.device("cpu") and targets["y"].device == torch.device("cpu")
    assert Placement("cpu").batch("label") == "label"
