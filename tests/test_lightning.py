"""The Lightning recipe (go4align.integrations.lightning) on the CPU: each kind of method trains
as in the plain loop of the README, and a fit resumed from a Lightning checkpoint continues the
weighting exactly."""

import importlib
import logging
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers.training import identical
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from go4align.weighting import make

pl = pytest.importorskip("lightning.pytorch")

from go4align.integrations.lightning import MultiTaskModule  # noqa: E402

M = 3  # three tasks: PCGrad's random order, drawn from its generator, matters from M = 3 on
EPOCHS = 4
LOSS_METHODS = ["ls", "go4align", "famo", "uw"]
GRADIENT_METHODS = ["pcgrad", "mgda"]


@pytest.fixture(autouse=True)
def quiet_lightning():
    """Lightning's notes on the CPU run (no GPU, few loader workers) say nothing about the test."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"lightning\.")
        yield


def data() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=generator)
    y = torch.stack([x[:, 0] * 2, x[:, 1] - x[:, 2], 10 * x[:, 3] ** 2], 1)  # losses of different scales
    return DataLoader(TensorDataset(x, y), batch_size=8)  # 6 steps per epoch, in a fixed order


class Net(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = nn.Sequential(nn.Linear(4, 16), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(16, 1) for _ in range(M))

    def forward(self, x):
        representation = self.encoder(x)
        return torch.cat([head(representation) for head in self.heads], 1), representation


def task_losses(net: Net, batch) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    predictions, representation = net(x)
    return ((predictions - y) ** 2).mean(0), representation


def build_optimizer(parameters):
    optimizer = torch.optim.Adam(parameters, lr=0.02)  # moments: state the checkpoint must carry
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)


class Tiny(MultiTaskModule):
    """The recipe of docs/lightning.md on a tiny network."""

    def __init__(self, weighting, seed: int = 0, **options):
        super().__init__(weighting, **options)
        self.net = Net(seed)

    def task_losses(self, batch):
        return task_losses(self.net, batch)

    def shared_parameters(self):
        return self.net.encoder.parameters()

    def configure_optimizers(self):
        optimizer, scheduler = build_optimizer(self.parameters())
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class Steps(pl.Callback):
    """The weights and losses of every training step."""

    def __init__(self):
        self.weights, self.losses = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.weights.append(module.weighting.diagnostics["weights"].clone())
        self.losses.append(module.weighting.diagnostics["losses"].clone())


def trainer(epochs: int, *callbacks, **options) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        **options,
    )


def plain_loop(method: str, epochs: int):
    """The README's drop-in loop, with the scheduler stepped every epoch."""
    net, weighting = Net(0), make(method, M)
    optimizer, scheduler = build_optimizer([*net.parameters(), *weighting.parameters()])
    weights = []
    for _ in range(epochs):
        for batch in data():
            optimizer.zero_grad()
            losses, representation = task_losses(net, batch)
            weighting.backward(losses, shared_parameters=net.encoder.parameters(), shared_representation=representation)
            optimizer.step()
            weighting.after_step(lambda: task_losses(net, batch)[0])
            weights.append(weighting.diagnostics["weights"].clone())
        weighting.end_epoch()
        scheduler.step()
    return net, weighting, weights


def same_state(a: nn.Module, b: nn.Module) -> bool:
    return identical(a.state_dict(), b.state_dict())


@pytest.mark.parametrize("method", LOSS_METHODS + GRADIENT_METHODS)
def test_lightning_trains_as_the_plain_loop(method):
    module, steps = Tiny(make(method, M)), Steps()
    assert module.automatic_optimization == (method in LOSS_METHODS)
    trainer(2, steps).fit(module, data())
    net, weighting, weights = plain_loop(method, 2)
    assert len(steps.weights) == len(weights) == 12
    assert all(torch.equal(a, b) for a, b in zip(steps.weights, weights))
    assert same_state(module.net, net) and same_state(module.weighting, weighting)


@pytest.mark.parametrize("method", ["go4align", "famo", "uw", "pcgrad"])
def test_a_fit_resumed_from_a_checkpoint_continues_the_weighting_exactly(method, tmp_path):
    whole, whole_steps = Tiny(make(method, M)), Steps()
    trainer(EPOCHS, whole_steps).fit(whole, data())

    first, first_steps = Tiny(make(method, M)), Steps()
    cut = trainer(EPOCHS // 2, first_steps)
    cut.fit(first, data())
    cut.save_checkpoint(tmp_path / "cut.ckpt")
    saved = torch.load(tmp_path / "cut.ckpt", weights_only=False)["state_dict"]
    assert int(saved["weighting.step"]) == 12 == first.weighting.step
    # a new process: another initial model and a fresh weighting, all replaced by the checkpoint's
    resumed, resumed_steps = Tiny(make(method, M), seed=1), Steps()
    trainer(EPOCHS, resumed_steps).fit(resumed, data(), ckpt_path=tmp_path / "cut.ckpt")

    assert len(first_steps.weights) + len(resumed_steps.weights) == len(whole_steps.weights) == 24
    for key in ("weights", "losses"):
        continued = getattr(first_steps, key) + getattr(resumed_steps, key)
        assert all(torch.equal(a, b) for a, b in zip(continued, getattr(whole_steps, key))), key
    assert same_state(resumed.net, whole.net) and same_state(resumed.weighting, whole.weighting)


def test_the_weighting_state_is_in_the_checkpoint(tmp_path):
    module = Tiny(make("go4align", M))
    run = trainer(1)
    run.fit(module, data())
    run.save_checkpoint(tmp_path / "go4align.ckpt")
    saved = torch.load(tmp_path / "go4align.ckpt", weights_only=False)["state_dict"]
    for name, value in module.weighting.state_dict().items():
        assert identical(saved[f"weighting.{name}"], value), name
    assert not torch.equal(saved["weighting.log_alignment"], make("go4align", M).log_alignment)  # a history


def test_a_loss_oriented_step_returns_the_weighted_objective():
    module = Tiny(make("go4align", M))
    batch = next(iter(data()))
    objective = module.training_step(batch, 0)
    losses, weights = module.weighting.diagnostics["losses"], module.weighting.diagnostics["weights"]
    assert objective.requires_grad
    torch.testing.assert_close(objective.detach(), torch.dot(weights.to(losses.dtype), losses))


def test_task_names_log_every_steps_losses_and_weights():
    module, steps = Tiny(make("go4align", M), task_names=["a", "b", "c"]), Steps()
    run = trainer(1, steps)
    run.fit(module, data())
    for m, name in enumerate("abc"):
        assert run.callback_metrics[f"loss/{name}"].item() == steps.losses[-1][m].item()
        assert run.callback_metrics[f"weight/{name}"].item() == steps.weights[-1][m].item()


def test_manual_optimization_trains_a_loss_oriented_method_through_its_backward():
    famo = make("famo", M, max_norm=0.5)  # clips in its backward: needs manual optimisation
    with pytest.raises(ValueError, match=r"FAMO\(max_norm=0.5\) clips the shared gradient.*optimization='manual'"):
        Tiny(famo)
    module = Tiny(famo, optimization="manual")
    assert not module.automatic_optimization
    trainer(1).fit(module, data())
    assert famo.step == 6 and int(famo.adam_steps) == 6


@pytest.mark.parametrize(
    ("weighting", "options", "error", "message"),
    [
        ("pcgrad", {"optimization": "automatic"}, ValueError, r"optimization='automatic' needs a loss-oriented"),
        ("ls", {"optimization": "auto-ish"}, ValueError, r"optimization must be one of .*'auto-ish'"),
        ("ls", {"task_names": ["a"]}, ValueError, r"task_names must name the 3 tasks, got \['a'\]"),
        (nn.Linear(2, 2), {}, TypeError, r"weighting must be a go4align Weighting, got Linear"),
    ],
)
def test_bad_arguments_are_named(weighting, options, error, message):
    with pytest.raises(error, match=message):
        Tiny(make(weighting, M) if isinstance(weighting, str) else weighting, **options)


def test_famo_refuses_gradient_accumulation():
    with pytest.raises(
        ValueError, match=r"FAMO updates after every optimiser step.*accumulate_grad_batches must be 1, got 2"
    ):
        trainer(1, accumulate_grad_batches=2).fit(Tiny(make("famo", M)), data())


def test_a_gradient_method_without_shared_parameters_is_named():
    class NoShared(Tiny):
        def shared_parameters(self):
            return None

    with pytest.raises(ValueError, match="shared_parameters"):
        trainer(1).fit(NoShared(make("mgda", M)), data())


def test_without_lightning_the_import_names_the_extra(monkeypatch):
    for name in [n for n in sys.modules if n == "lightning" or n.startswith("lightning.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "go4align.integrations.lightning")
    monkeypatch.setitem(sys.modules, "lightning", None)
    with pytest.raises(ImportError, match=r"pip install 'go4align\[lightning\]'"):
        importlib.import_module("go4align.integrations.lightning")


def test_the_recipe_of_the_docs_runs_as_printed(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[1] / "docs" / "lightning.md").read_text()
    recipe, resume = re.findall(r"```python\n(.*?)```", text, re.S)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(recipe, "docs/lightning.md", "exec"), namespace)
    module = namespace["trainer"].lightning_module
    assert not module.automatic_optimization and module.weighting.step == 2 * 16  # pcgrad, 2 epochs
    exec(compile(resume, "docs/lightning.md", "exec"), namespace)
    module = namespace["trainer"].lightning_module
    assert module.automatic_optimization and module.weighting.step == 4 * 16  # go4align, resumed at epoch 2
