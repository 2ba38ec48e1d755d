import pytest
import torch

from go4align.benchmarks.qm9 import data
from go4align.benchmarks.qm9.data import ATOMIC_NUMBERS, ELEMENTS, INSTALL_HINT, MoleculeGraph


def random_molecule(num_atoms: int, generator: torch.Generator) -> MoleculeGraph:
    """A molecule-shaped graph: element one-hots, random flags, a random spanning tree of bonds."""
    element = torch.randint(len(ELEMENTS), (num_atoms,), generator=generator)
    z = torch.tensor([float(ATOMIC_NUMBERS[ELEMENTS[e]]) for e in element])
    flags = torch.randint(2, (num_atoms, 4), generator=generator).float()
    num_hs = torch.randint(4, (num_atoms, 1), generator=generator).float()
    x = torch.cat([torch.nn.functional.one_hot(element, len(ELEMENTS)).float(), z[:, None], flags, num_hs], 1)
    positions = torch.randn(num_atoms, 3, generator=generator) * 1.5
    parents = [int(torch.randint(i, (1,), generator=generator)) for i in range(1, num_atoms)]
    bonds = torch.tensor([[p, i] for i, p in zip(range(1, num_atoms), parents)], dtype=torch.int64)
    bond_types = torch.randint(4, (num_atoms - 1,), generator=generator)
    return MoleculeGraph(x, positions, bonds.reshape(-1, 2), bond_types)


@pytest.fixture
def molecules():
    """Synthetic molecules of the given sizes (3..29 atoms in QM9), reproducible."""

    def make(sizes, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return [random_molecule(n, generator) for n in sizes]

    return make


@pytest.fixture(scope="session")
def real_qm9(tmp_path_factory):
    """(cache folder, raw data): the first 24 molecules of the permutation, built once per session
    through `load_or_build_cache` with 2 processes. Skips without qm9pack or RDKit."""
    pytest.importorskip("rdkit", reason=INSTALL_HINT)
    if data.importlib.util.find_spec("qm9pack") is None:
        pytest.skip(INSTALL_HINT)
    raw = data.read_raw()
    folder = tmp_path_factory.mktemp("qm9cache")
    with pytest.MonkeyPatch.context() as patch:  # reuse the parsed CSVs instead of reading them again
        patch.setattr(data, "read_raw", lambda data_dir=None: raw)
        data.load_or_build_cache("reference", 24, cache_dir=folder, processes=2)
    return folder, raw


@pytest.fixture(scope="session")
def tiny_qm9_cache(real_qm9, tmp_path_factory):
    """A cache folder holding the molecules of the tiny protocol, featurised from the CSVs that
    `real_qm9` parsed (reading them again costs seconds)."""
    _, raw = real_qm9
    folder = tmp_path_factory.mktemp("qm9tiny")
    n_first = max(r.stop for r in data.PROTOCOLS["tiny"].values())
    data.build_cache(raw, n_first, processes=1).save(data.cache_path(folder, "reference", data.SPLIT_SEED, n_first))
    return folder
