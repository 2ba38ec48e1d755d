import subprocess
import sys

import numpy as np
import pytest
import torch

from go4align.benchmarks.qm9 import data
from go4align.benchmarks.qm9.data import (
    INSTALL_HINT,
    N_MOLECULES,
    PROTOCOLS,
    QM9Cache,
    QM9Dataset,
    batch_graphs,
    collate,
    featurise_molecule,
    reference_targets,
    split_permutation,
    split_range,
    split_ranges,
)
from go4align.benchmarks.qm9.tasks import TASK_NAMES, TargetStats

HA = 27.211386246

# qm9pack rows (targets in qm9pack's units, `_TARGET_COLUMNS` order) and their H, C, N, O, F counts
CH4 = (
    [0.0, 13.21, -0.3877, 0.1171, 35.3641, 0.044749, -40.47893, -40.476062, -40.475117, -40.498597, 6.469],
    [4, 1, 0, 0, 0],
)
H2O = (
    [1.8511, 6.31, -0.2928, 0.0687, 19.0002, 0.021375, -76.404702, -76.401867, -76.400922, -76.422349, 6.002],
    [2, 0, 0, 1, 0],
)

FORMALDEHYDE = (
    "C=O",
    ["C", "O", "H", "H"],
    [
        [-0.0139776956, 1.1802114286, 0.0077524981],
        [0.0023139861, -0.0196636557, 0.0021610727],
        [0.9149602868, 1.789511172, 0.0039565555],
        [-0.9591097173, 1.7640179751, 0.0171828436],
    ],
)
FURAN = (
    "O1C=CC=C1",
    ["O", "C", "C", "C", "C", "H", "H", "H", "H"],
    [
        [-0.0325581853, 1.3506512966, 0.009673761],
        [1.2531923679, 1.7916770989, -0.0003035114],
        [2.1166468117, 0.7437562321, -0.0144149409],
        [1.3039779576, -0.4385238686, -0.0128331612],
        [0.0162956801, -0.0077718531, 0.001912939],
        [1.3795108938, 2.86161135, 0.0042743276],
        [3.1937640561, 0.7986550126, -0.024586037],
        [1.638588929, -1.4638327149, -0.0215694921],
        [-0.937362951, -0.5089992534, 0.0084389051],
    ],
)


def _needs(module):
    return pytest.importorskip(module, reason=INSTALL_HINT)


# ---------------------------------------------------------------- targets


def test_ch4_targets_by_hand():
    targets = reference_targets(np.array([CH4[0]]), np.array([CH4[1]]))[0]
    by_task = dict(zip(TASK_NAMES, targets))
    assert by_task["mu"] == 0.0 and by_task["alpha"] == 13.21 and by_task["R2"] == 35.3641
    assert by_task["c_v"] == 6.469
    assert by_task["eps_HOMO"] == pytest.approx(-0.3877 * HA)
    assert by_task["eps_LUMO"] == pytest.approx(0.1171 * HA)
    assert by_task["ZPVE"] == pytest.approx(0.044749 * HA)
    # one carbon and four hydrogens of torch_geometric's atomrefs (U0 row)
    assert by_task["U0"] == pytest.approx(-40.47893 * HA - (-1029.86312267 + 4 * -13.61312172))
    assert by_task["G"] == pytest.approx(-40.498597 * HA - (-1030.25891228 + 4 * -13.90303183))
    # independent check: gdb9.sdf.csv's u0_atom for gdb_1, -395.999595 kcal/mol, in eV
    assert by_task["U0"] == pytest.approx(-395.999595 * 0.04336414, abs=1e-4)
    # atomisation energies are of order 10 eV, not the ~1000 eV of total energies
    assert -20 < by_task["U"] < -15 and -20 < by_task["H"] < -15


def test_h2o_atomisation_energies_by_hand():
    targets = dict(zip(TASK_NAMES, reference_targets(np.array([H2O[0]]), np.array([H2O[1]]))[0]))
    assert targets["U0"] == pytest.approx(-76.404702 * HA - (-2042.61123593 + 2 * -13.61312172))
    assert targets["U"] == pytest.approx(-76.401867 * HA - (-2042.5727046 + 2 * -13.5745904))
    assert targets["H"] == pytest.approx(-76.400922 * HA - (-2042.54701705 + 2 * -13.54887564))
    assert targets["G"] == pytest.approx(-76.422349 * HA - (-2043.01812778 + 2 * -13.90303183))
    assert targets["U0"] == pytest.approx(-9.2403778, abs=1e-6)


def test_reference_targets_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, 11\]"):
        reference_targets(np.zeros((2, 10)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="stoichiometry"):
        reference_targets(np.zeros((2, 11)), np.zeros((2, 4)))


def test_parsers_accept_qm9pack_quirks_and_name_bad_values():
    assert data.parse_elements("['C','H','H']") == ["C", "H", "H"]
    assert data.parse_xyz("[[0.5995394918,0.,1.],[-0.5,0.,1.]]", 2).tolist() == [[0.5995394918, 0, 1], [-0.5, 0, 1]]
    with pytest.raises(ValueError, match="'Cl'"):
        data.parse_elements("['C','Cl']")
    with pytest.raises(ValueError, match="expected 6 coordinates"):
        data.parse_xyz("[[0.,0.,0.]]", 2)


# ---------------------------------------------------------------- splits


def test_split_permutation_is_fixed():
    permutation = split_permutation()
    assert permutation[:5].tolist() == [130195, 68784, 7957, 25911, 20168]
    assert np.array_equal(np.sort(permutation), np.arange(N_MOLECULES))
    assert not np.array_equal(split_permutation(1), permutation)


@pytest.mark.parametrize(
    "protocol, sizes",
    [
        ("full", {"test": 10_000, "val": 10_000, "train": 110_831}),
        ("reduced", {"test": 10_000, "val": 2_000, "train": 10_000}),
    ],
)
def test_split_sizes_and_disjointness(protocol, sizes):
    ranges = {split: split_range(split, protocol) for split in sizes}
    assert {split: len(r) for split, r in ranges.items()} == sizes
    sets = [set(r) for r in ranges.values()]
    assert sum(len(s) for s in sets) == len(set().union(*sets))
    assert ranges["test"] == range(0, 10_000)  # test = the first 10k of the permutation, as the reference


def test_reduced_splits_are_subsets_of_the_full_ones():
    for split in ("train", "val", "test"):
        assert set(split_range(split, "reduced")) <= set(split_range(split, "full"))


def test_tiny_splits_are_disjoint_and_need_a_small_cache():
    ranges = split_ranges("tiny")
    assert {split: len(r) for split, r in ranges.items()} == {"train": 200, "val": 100, "test": 100}
    assert sorted(p for r in ranges.values() for p in r) == list(range(400))


def test_sizes_keep_the_first_molecules_of_a_split():
    ranges = split_ranges("full", {"train": 20_000, "val": 2_000, "test": None})
    assert ranges == {"train": range(20_000, 40_000), "val": range(10_000, 12_000), "test": range(0, 10_000)}
    # the reduced protocol is the full one cut to its sizes
    reduced = split_ranges("reduced")
    assert split_ranges("full", {split: len(r) for split, r in reduced.items()}) == reduced


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"train": 0}, r"train_size must be an int in \[1, 10000\] for the 'reduced' protocol, got 0"),
        ({"val": 2_001}, r"val_size must be an int in \[1, 2000\] for the 'reduced' protocol, got 2001"),
        ({"test": 1.5}, "test_size .* got 1.5"),
        ({"validation": 5}, r"unknown QM9 split\(s\) \['validation'\]"),
    ],
)
def test_bad_sizes_are_named(sizes, message):
    with pytest.raises(ValueError, match=message):
        split_ranges("reduced", sizes)


def test_bad_split_and_protocol_names_are_named():
    with pytest.raises(ValueError, match="'validation'"):
        split_range("validation")
    with pytest.raises(ValueError, match="'small'"):
        split_range("train", "small")


# ---------------------------------------------------------------- missing data


def test_missing_qm9pack_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'go4align\[qm9\]'"):
        data.qm9pack_data_dir()
    with pytest.raises(ImportError, match=r"pip install 'go4align\[qm9\]'"):
        data.load_or_build_cache(n_first=5, cache_dir=tmp_path)


def test_missing_csv_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="qm9_part1.csv"):
        data.read_raw(tmp_path)


def test_bad_feature_mode_is_named(tmp_path):
    with pytest.raises(ValueError, match="'sanitised'"):
        data.load_or_build_cache("sanitised", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'sanitised'"):
        featurise_molecule(*FORMALDEHYDE, features="sanitised")


@pytest.mark.slow
def test_package_import_needs_no_optional_dependency():
    code = (
        "import sys, go4align.benchmarks.qm9; "
        "print(sorted(m for m in ('rdkit', 'qm9pack', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GO4ALIGN_CACHE", str(tmp_path))
    assert data.default_cache_dir() == tmp_path / "qm9"
    monkeypatch.delenv("GO4ALIGN_CACHE")
    assert data.default_cache_dir().parts[-3:] == (".cache", "go4align", "qm9")


# ---------------------------------------------------------------- featurisation


def _bond_set(arrays):
    return {(min(i, j), max(i, j), t) for (i, j), t in zip(arrays.bonds.tolist(), arrays.bond_types.tolist())}


def test_formaldehyde_features_by_hand():
    _needs("rdkit")
    reference = featurise_molecule(*FORMALDEHYDE, features="reference")
    #                      H  C  N  O  F  Z  aro sp sp2 sp3 num_hs
    assert reference.node_features.tolist() == [
        [0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 2],
        [0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
    ]
    assert _bond_set(reference) == {(0, 1, 1), (0, 2, 0), (0, 3, 0)}  # C=O double, two C-H single
    assert reference.bonds_from_smiles
    rdkit = featurise_molecule(*FORMALDEHYDE, features="rdkit")
    assert rdkit.node_features[:2, 6:10].tolist() == [[0, 0, 1, 0], [0, 0, 1, 0]]  # both sp2
    assert _bond_set(rdkit) == _bond_set(reference)


def test_furan_reference_is_kekule_and_rdkit_is_aromatic():
    _needs("rdkit")
    ring = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]
    hydrogens = {(1, 5, 0), (2, 6, 0), (3, 7, 0), (4, 8, 0)}  # each H bonded to its nearest carbon
    reference = featurise_molecule(*FURAN, features="reference")
    kekule = {(0, 1, 0), (1, 2, 1), (2, 3, 0), (3, 4, 1), (0, 4, 0)}
    assert _bond_set(reference) == kekule | hydrogens
    assert reference.node_features[:, 6:10].sum() == 0  # the unsanitised quirk: no aromatic/sp flags
    assert reference.node_features[:, 10].tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0]
    rdkit = featurise_molecule(*FURAN, features="rdkit")
    assert _bond_set(rdkit) == {(i, j, 3) for i, j in ring} | hydrogens
    assert rdkit.node_features[:5, 6].tolist() == [1] * 5 and rdkit.node_features[5:, 6].sum() == 0
    assert rdkit.node_features[:5, 8].tolist() == [1] * 5  # sp2


def test_smiles_that_contradicts_the_geometry_falls_back_to_connectivity():
    _needs("rdkit")
    _, elements, xyz = FORMALDEHYDE
    for smiles in ("CO", "OC", "not a smiles"):  # wrong hydrogen count, wrong atom order, unparsable
        arrays = featurise_molecule(smiles, elements, xyz, features="rdkit")
        assert not arrays.bonds_from_smiles
        assert _bond_set(arrays) == {(0, 1, 0), (0, 2, 0), (0, 3, 0)}  # connectivity, all single
        assert arrays.node_features[:, 6:10].sum() == 0
        assert arrays.node_features[0, 10] == 2


# ---------------------------------------------------------------- batching


def test_collate_builds_complete_graphs_with_distances():
    _needs("rdkit")
    smiles, elements, xyz = FORMALDEHYDE
    arrays = featurise_molecule(smiles, elements, xyz)
    graph = data.MoleculeGraph(
        torch.tensor(arrays.node_features, dtype=torch.float32),
        torch.tensor(xyz, dtype=torch.float32),
        torch.tensor(arrays.bonds, dtype=torch.int64),
        torch.tensor(arrays.bond_types, dtype=torch.int64),
    )
    batch, targets = collate([(graph, torch.arange(11.0))])
    (block,) = batch.blocks
    edge = block.edge_attr[0]
    xyz = np.array(xyz)
    for i in range(4):
        for j in range(4):
            assert edge[i, j, 4].item() == pytest.approx(np.linalg.norm(xyz[i] - xyz[j]), abs=1e-6)
    expected_bonds = torch.zeros(4, 4, 4)
    for i, j, t in [(0, 1, 1), (0, 2, 0), (0, 3, 0)]:
        expected_bonds[i, j, t] = expected_bonds[j, i, t] = 1
    assert torch.equal(edge[..., :4], expected_bonds)  # non-bonded pairs: zero one-hot
    assert torch.equal(block.node_features[0], graph.node_features)
    assert targets["U0"].tolist() == [6.0] and list(targets) == list(TASK_NAMES)


def test_batch_sorts_into_padded_blocks(molecules):
    sizes = [9, 3, 27, 14, 5, 21, 3, 18]
    batch = batch_graphs(molecules(sizes), num_blocks=3)
    assert len(batch) == 8 and len(batch.blocks) == 3
    seen = torch.cat([block.graph_index for block in batch.blocks])
    assert sorted(seen.tolist()) == list(range(8))
    for block in batch.blocks:
        atoms = block.node_mask.sum(dim=1)
        assert atoms.tolist() == [sizes[i] for i in block.graph_index]
        assert block.node_mask.shape[1] == max(atoms)
    assert [b.node_mask.shape[1] for b in batch.blocks] == [5, 18, 27]  # sorted sizes split 3|3|2
    assert len(batch_graphs(molecules([4, 5]), num_blocks=4).blocks) == 2
    with pytest.raises(ValueError, match="num_blocks must be at least 1, got 0"):
        batch_graphs(molecules([4]), num_blocks=0)


def test_batch_to_converts_floats_only(molecules):
    batch = batch_graphs(molecules([4, 6])).to(dtype=torch.float64)
    block = batch.blocks[0]
    assert block.edge_attr.dtype == torch.float64 and block.node_features.dtype == torch.float64
    assert block.node_mask.dtype == torch.bool and block.graph_index.dtype == torch.int64


# ---------------------------------------------------------------- cache


def _synthetic_cache():
    rng = np.random.default_rng(0)  # two molecules: 3 and 5 atoms, 2 and 4 bonds
    return QM9Cache(
        features="reference",
        seed=0,
        qm9_id=np.array([7, 3], dtype=np.int32),
        row=np.array([6, 2], dtype=np.int32),
        targets=rng.normal(size=(2, 11)),
        atom_offsets=np.array([0, 3, 8]),
        node_features=rng.integers(0, 9, (8, 11)).astype(np.uint8),
        positions=rng.normal(size=(8, 3)).astype(np.float32),
        bond_offsets=np.array([0, 2, 6]),
        bonds=np.array([[0, 1], [1, 2], [0, 1], [1, 2], [2, 3], [3, 4]], dtype=np.uint8),
        bond_types=np.array([0, 1, 0, 2, 3, 0], dtype=np.uint8),
        bonds_from_smiles=np.array([True, False]),
    )


def test_cache_round_trip(tmp_path):
    cache = _synthetic_cache()
    cache.save(tmp_path / "c.npz")
    loaded = QM9Cache.load(tmp_path / "c.npz")
    assert loaded.features == "reference" and loaded.seed == 0 and len(loaded) == 2
    for name in (
        "qm9_id",
        "row",
        "targets",
        "atom_offsets",
        "node_features",
        "positions",
        "bond_offsets",
        "bonds",
        "bond_types",
        "bonds_from_smiles",
    ):
        assert np.array_equal(getattr(loaded, name), getattr(cache, name)), name
        assert getattr(loaded, name).dtype == getattr(cache, name).dtype, name
    graph = loaded.graph(1)
    assert graph.node_features.shape == (5, 11) and graph.bonds.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert list(tmp_path.iterdir()) == [tmp_path / "c.npz"]  # no temporary file left behind


def test_dataset_items_are_standardised_graphs():
    cache = _synthetic_cache()
    stats = TargetStats(mean=torch.zeros(11, dtype=torch.float64), std=torch.full((11,), 2.0, dtype=torch.float64))
    dataset = QM9Dataset(cache, range(0, 2), stats)
    graph, target = dataset[1]
    assert graph.positions.shape == (5, 3)
    assert torch.allclose(target, torch.from_numpy(cache.targets[1] / 2).float())
    with pytest.raises(ValueError, match="exceed the cache's 2 molecules"):
        QM9Dataset(cache, range(0, 3), stats)


# ---------------------------------------------------------------- real QM9 (qm9pack + rdkit)

N_FIRST = 24  # the size the `real_qm9` fixture builds


def test_real_cache_is_built_once_and_matches_the_permutation(real_qm9, monkeypatch):
    folder, raw = real_qm9
    assert data.cache_path(folder, "reference", data.SPLIT_SEED, N_FIRST).is_file()
    monkeypatch.setattr(data, "read_raw", None)  # a second call must not featurise again
    cache = data.load_or_build_cache("reference", N_FIRST, cache_dir=folder)
    rows = split_permutation()[:N_FIRST]
    assert cache.row.tolist() == rows.tolist()
    assert np.array_equal(cache.qm9_id, raw.qm9_id[rows])
    assert np.array_equal(cache.targets, raw.targets[rows])
    assert cache.bonds_from_smiles.all()
    hydrogen = cache.node_features[:, 0] == 1
    assert (cache.node_features[hydrogen, 5] == 1).all() and (cache.node_features[:, 6:10] == 0).all()
    for k in range(N_FIRST):
        atoms = slice(cache.atom_offsets[k], cache.atom_offsets[k + 1])
        bonds = cache.bonds[cache.bond_offsets[k] : cache.bond_offsets[k + 1]]
        degree = np.bincount(bonds.ravel(), minlength=atoms.stop - atoms.start)
        assert (degree[hydrogen[atoms]] == 1).all()  # every hydrogen has exactly one bond
        elements = data.parse_elements(raw.elements[rows[k]])
        assert np.allclose(cache.positions[atoms], data.parse_xyz(raw.xyz[rows[k]], len(elements)), atol=1e-6)


def test_pool_and_single_process_featurise_identically(real_qm9):
    folder, raw = real_qm9
    pooled = data.load_or_build_cache("reference", N_FIRST, cache_dir=folder)
    single = data.build_cache(raw, 6, "reference", processes=1)
    for name in ("node_features", "positions"):
        assert np.array_equal(getattr(single, name), getattr(pooled, name)[: single.atom_offsets[-1]])
    for name in ("bonds", "bond_types"):
        assert np.array_equal(getattr(single, name), getattr(pooled, name)[: single.bond_offsets[-1]])


def test_load_qm9_standardises_with_the_training_split(real_qm9, monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "first24", {"test": range(0, 8), "val": range(8, 12), "train": range(12, 24)})
    splits = data.load_qm9("first24", cache_dir=real_qm9[0])
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "val": 4, "test": 8}
    train_targets = torch.stack([splits["train"][i][1] for i in range(12)]).double()
    assert torch.allclose(train_targets.mean(0), torch.zeros(11, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train_targets.std(0), torch.ones(11, dtype=torch.float64), atol=1e-5)
    assert splits["val"].stats is splits["train"].stats
    loader = torch.utils.data.DataLoader(splits["test"], batch_size=5, collate_fn=collate)
    batch, targets = next(iter(loader))
    assert len(batch) == 5 and targets["mu"].shape == (5,)
