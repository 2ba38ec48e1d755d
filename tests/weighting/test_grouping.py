"""Grouping (Eq. 3 as a module): fixed, custom and random clusterings and group weights, the
options' validation, the weights as group means, and a step that stays on one thread and on the
device."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import go4align
from go4align.weighting import FAMO, UW, Grouped, Grouping, kmeans_1d


def test_grouping_fixed_partition_and_weights():
    grouping = Grouping(3, 2, clustering=[0, 1, 0], group_weights=[0.8, 0.1])
    weights, labels, omega, sizes = grouping(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert weights.tolist() == pytest.approx([0.8, 0.1, 0.8])
    assert labels.tolist() == [0, 1, 0]
    assert sizes.tolist() == [2, 1]


def test_grouping_centroids_are_group_means():
    grouping = Grouping(4, 2)
    weights, labels, omega, sizes = grouping(torch.tensor([1.0, 1.2, 4.0, 4.4], dtype=torch.float64))
    assert omega.tolist() == pytest.approx([1.1, 4.2])
    assert weights.tolist() == pytest.approx([1.1, 1.1, 4.2, 4.2])
    assert sizes.tolist() == [2, 2]


def test_random_options_follow_the_seed_and_state():
    a = Grouping(5, 2, clustering="random", group_weights="random", seed=3)
    b = Grouping(5, 2, clustering="random", group_weights="random", seed=3)
    x = torch.ones(5, dtype=torch.float64)
    for _ in range(3):
        assert torch.equal(a(x).weights, b(x).weights)
    state = a.state_dict()
    expected = a(x).weights
    b.load_state_dict(state)
    assert torch.equal(b(x).weights, expected)


def test_custom_clustering_callable():
    grouping = Grouping(3, 2, clustering=lambda values, k: torch.tensor([1, 0, 1]))
    assert grouping(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).labels.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_groups": 0}, "num_groups"),
        ({"num_groups": 4}, "num_groups"),
        ({"num_groups": 2.0}, "num_groups"),
        ({"num_groups": 2, "clustering": "kmeans++"}, "clustering"),
        ({"num_groups": 2, "clustering": [0, 1]}, "fixed partition"),
        ({"num_groups": 2, "clustering": [0, 1, 2]}, "fixed partition"),
        ({"num_groups": 2, "group_weights": [1.0]}, "group_weights"),
        ({"num_groups": 2, "group_weights": [1.0, -1.0]}, "group_weights"),
        ({"num_groups": 2, "group_weights": [0.0, 0.0]}, "group_weights"),
        ({"num_groups": 2, "group_weights": "uniform"}, "group_weights"),
        ({"num_groups": 2, "seed": "x"}, "seed"),
    ],
)
def test_grouping_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Grouping(3, **kwargs)


BAD_CLUSTERINGS = [
    3,
    0,
    -1,
    2.5,
    math.nan,
    math.inf,
    True,
    None,
    10**30,
    torch.tensor(0.5),
    np.int64(2),
    object(),
    [1, 2],
    [0.5, 0.3, 0.2],
    [0, 1, 2],
    [0, 1, True],
    "fixed",
    torch.tensor([0.0, 1.0, 1.0]),
]


@pytest.mark.parametrize("clustering", BAD_CLUSTERINGS, ids=repr)
def test_a_bad_clustering_is_named_with_its_value(clustering):
    with pytest.raises(ValueError, match=r"clustering must be one of .*got " + re.escape(repr(clustering))):
        Grouping(3, 2, clustering=clustering)


BAD_GROUP_WEIGHTS = [
    3,
    0,
    2.5,
    math.nan,
    math.inf,
    True,
    10**30,
    torch.tensor(0.5),
    np.int64(2),
    object(),
    "x",
    [1.0, math.nan],
    [1.0, math.inf],
    [1.0, True],
    [1.0, "2"],
    [1.0, 10**400],
    [0.5, 0.3, 0.2],
]


@pytest.mark.parametrize("group_weights", BAD_GROUP_WEIGHTS, ids=repr)
def test_bad_group_weights_are_named_with_their_value(group_weights):
    with pytest.raises(ValueError, match="group_weights .*got " + re.escape(repr(group_weights))):
        Grouping(3, 2, group_weights=group_weights)


@pytest.mark.parametrize("seed", [10**30, -(2**63) - 1, 2**64, 1.0, True, None])
def test_a_seed_the_generator_cannot_take_is_named(seed):
    with pytest.raises(ValueError, match="seed must be an int .*got " + re.escape(repr(seed))):
        Grouping(3, 2, seed=seed)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_spectral_needs_a_seed_scikit_learn_takes(seed):
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\) with clustering='spectral'"):
        Grouping(3, 2, clustering="spectral", seed=seed)
    Grouping(3, 2, clustering="exact", seed=seed)  # any int torch's generator takes


def test_a_fixed_partition_and_group_weights_may_be_tensors_arrays_or_numpy_numbers():
    partitions = [[1, 0, 1], (1, 0, 1), torch.tensor([1, 0, 1]), np.array([1, 0, 1]), [np.int64(1), 0, np.int32(1)]]
    for partition in partitions:
        grouping = Grouping(3, 2, clustering=partition, group_weights=np.array([0.25, 0.75]))
        weights = grouping(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).weights
        assert weights.tolist() == [0.75, 0.25, 0.75]
    assert Grouping(3, 2, group_weights=torch.tensor([0.0, 2.0])).group_weights == [0.0, 2.0]


def test_grouped_refuses_the_losses_its_method_refuses_before_either_changes_state():
    """FAMO's weights for [-0.5, 4, 9] are negative (the log of a negative distance): Grouped
    passed them on as group indicators, and the model got negative weights."""
    method = Grouped(FAMO(3))
    losses = torch.tensor([-0.5, 4.0, 9.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"Grouped: loss < 0 at step 0 for task\(s\) \[0\].*FAMO"):
        method.backward(losses)
    assert losses.grad is None and method.step == 0 and not bool(method.method.pending)
    weights = method.backward(torch.tensor([0.0, 4.0, 9.0], requires_grad=True))  # FAMO's eps takes a zero
    assert torch.isfinite(weights).all() and (weights >= 0).all()
    with pytest.raises(ValueError, match=r"loss <= 0 at step 0 for task\(s\) \[0\]"):
        Grouped(FAMO(3, eps=0.0)).backward(torch.tensor([0.0, 4.0, 9.0], requires_grad=True))
    Grouped(UW(3)).backward(torch.tensor([-0.5, 4.0, 9.0], requires_grad=True))  # UW takes any sign


@pytest.mark.parametrize("m, k", [(3, 2), (40, 5), (1000, 5), (1000, 2)])
def test_exact_grouping_reads_no_value_to_the_host(m, k):
    """On the meta device (shapes without values) the exact grouping runs through: every shape
    it makes depends on M and K only, so on a GPU it never waits for the device."""
    indicators = torch.empty(m, dtype=torch.float64, device="meta")
    result = Grouping(m, k)(indicators)
    assert result.weights.shape == (m,) and result.weights.device.type == "meta"
    assert result.labels.shape == (m,) and result.group_weights.shape == (k,)
    assert kmeans_1d(indicators, k).shape == (m,)


@pytest.mark.parametrize(
    "m, k, distinct",
    [
        (2, 2, 2),
        (3, 2, 3),
        (10, 2, 10),
        (64, 2, 64),
        (65, 2, 65),
        (100, 2, 100),
        (100, 2, 1),
        (11, 5, 11),
        (40, 5, 40),
        (40, 5, 3),
        (30, 4, 1),
        (300, 3, 300),
        (300, 6, 4),
    ],
)
def test_grouped_weights_are_the_group_means(m, k, distinct):
    """The weights come straight from the optimal partition of the sorted indicators as segment
    means, the labels only when read: every task gets exactly its group's mean indicator, the
    labels are kmeans_1d's, and with fewer distinct values than groups the unused ones come last
    with weight and size 0."""
    gen = torch.Generator().manual_seed(m * k + distinct)
    pool = torch.rand(distinct, generator=gen, dtype=torch.float64)
    values = pool[torch.randint(distinct, (m,), generator=gen)]
    values[: m // 3] = values[0]  # ties
    result = Grouping(m, k)(values)
    labels = kmeans_1d(values, k)
    assert torch.equal(result.labels, labels)
    used = labels.unique().tolist()
    assert used == list(range(min(k, len(values.unique()))))
    for group in used:
        members = labels == group
        assert torch.allclose(result.weights[members], values[members].mean().expand(int(members.sum())), rtol=1e-12)
        assert result.group_weights[group].item() == pytest.approx(values[members].mean().item(), rel=1e-12)
        assert result.group_sizes[group].item() == members.sum().item()
    assert result.group_weights[len(used) :].tolist() == [0.0] * (k - len(used))
    assert result.group_sizes[len(used) :].tolist() == [0.0] * (k - len(used))
    single = Grouping(m, k)(values.float())
    assert single.weights.dtype == torch.float32
    assert torch.allclose(single.weights.double(), result.weights, rtol=1e-6)


WAKE_PROBE = """
import os, sys, time, torch
from go4align.weighting import GO4Align, Grouping

torch.set_num_threads(2)
torch.ones(1 << 22).add_(1)  # starts the second intra-op thread


def worker_time():  # nanoseconds the other threads of this process have run
    tasks = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()]
    return sum(int(open(f"/proc/self/task/{t}/schedstat").read().split()[0]) for t in tasks)


def wakes(function):
    function()
    time.sleep(0.05)
    before = worker_time()
    for _ in range(20):
        function()
    return worker_time() > before


matrix = torch.rand(41, 41, dtype=torch.float64)
print("control", wakes(lambda: torch.max(matrix, dim=1)))
for m, k in [(3, 2), (40, 5), (1000, 2), (1000, 5)]:
    grouping, indicators = Grouping(m, k), torch.rand(m, dtype=torch.float64)
    print(m, k, wakes(lambda: grouping(indicators)))
    method, losses = GO4Align(m, k), torch.rand(m) + 0.1  # the whole weighting step
    print("step", m, k, wakes(lambda: method(losses)))
"""


@pytest.mark.slow
def test_the_exact_grouping_stays_on_one_thread():
    """With two torch threads on a busy machine, an operation that enters a parallel region waits
    for a descheduled thread (milliseconds for a microsecond step). Up to 1,000 tasks the exact
    grouping and GO4Align's whole step must not wake torch's second thread: measured by that
    thread's run time, with OpenMP told to let it sleep between regions. The control (max with
    indices, which always enters one) shows that the probe sees a wake."""
    if not os.path.exists(f"/proc/{os.getpid()}/schedstat"):
        pytest.skip("needs Linux's per-thread schedstat")
    source = str(Path(go4align.__file__).resolve().parents[1])
    env = dict(os.environ, OMP_WAIT_POLICY="passive", PYTHONPATH=source)
    output = subprocess.run([sys.executable, "-c", WAKE_PROBE], env=env, capture_output=True, text=True, check=True)
    lines = output.stdout.splitlines()
    if lines[0] != "control True":
        pytest.skip(f"this torch build's threads cannot be observed: {lines[0]}")
    cases = ["3 2", "40 5", "1000 2", "1000 5"]
    assert lines[1:] == [line for case in cases for line in (f"{case} False", f"step {case} False")]
