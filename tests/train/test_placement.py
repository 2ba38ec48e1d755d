import pytest
import torch

from go4align.train.placement import Placement, distributed, is_main_process


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


def test_a_torchrun_launch_without_a_process_group_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="WORLD_SIZE=2 but torch.distributed is not initialised"):
        Placement("cpu")


def test_one_process_is_left_as_it_is(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed("cpu"):
        place = Placement("cpu")
        batches = list(torch.arange(10).split(4))
        assert place.world_size == 1 and place.shard(batches) is batches
        model = torch.nn.Linear(2, 2)
        assert place.wrap(model) is model and is_main_process()
