"""QM9 from the qm9pack wheel: targets, featurisation, a compact cache, splits, Dataset and collate.

The protocol is the one of Nash-MTL/FAMO/GO4Align (torch_geometric's QM9, complete graph, distance
edge feature), rebuilt from qm9pack's CSV files, which hold the same 130,831 molecules in the same
order, with the same targets and coordinates, as torch_geometric's QM9.

Where the bonds come from differs. torch_geometric reads each molecule's bonds and bond types from
its SDF file (``gdb9.sdf``); qm9pack ships no SDF, so here they come from the molecule's SMILES
(Kekulised by RDKit in the ``"reference"`` feature mode), checked against the 3-D geometry, and
from RDKit's connectivity on the coordinates when the SMILES disagrees (8 of the 130,831
molecules, every bond then single; counted with `build_cache`'s ``bonds_from_smiles``). The SMILES
and the SDF can disagree on bond orders (another Kekule structure, a charge-separated versus a
neutral form) or, rarely, on which atoms are bonded: about 1% of the molecules may get other bond
labels than torch_geometric's (an estimate; the SDF is not available offline to count them).
That changes only the one-hot bond types of those molecules' bonded pairs (the graphs are complete
and the distances come from the coordinates) and, where the bonded pairs differ, the hydrogen
counts of the node features.

Pipeline: `read_raw` parses the CSVs and converts the 11 targets to the reference units;
`load_or_build_cache` featurises the molecules at the first `n` positions of the fixed split
permutation once (RDKit, a process pool) into one .npz file; `load_qm9` returns the train/val/test
`QM9Dataset`s of a protocol with targets standardised by the training split; `collate` batches
`(graph, targets)` items into padded blocks of complete graphs, computing distances per batch.
"""

from __future__ import annotations

import csv
import importlib.util
import multiprocessing
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from go4align.benchmarks.qm9.tasks import NUM_TASKS, TASK_NAMES, TargetStats

INSTALL_HINT = "QM9 needs the qm9pack data wheel and RDKit: pip install 'go4align[qm9]'"

N_MOLECULES = 130_831
HARTREE_TO_EV = 27.211386246  # CODATA 2018, the value torch_geometric's QM9 uses

ELEMENTS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

# Per-element atom energies in eV, copied from torch_geometric/datasets/qm9.py (`atomrefs`, rows 7-10
# = U0, U, H, G; columns H, C, N, O, F). The atomisation energy is the total energy minus the sum of
# these over the molecule's atoms.
ATOMREFS_EV: dict[str, tuple[float, ...]] = {
    "U0": (-13.61312172, -1029.86312267, -1485.30251237, -2042.61123593, -2713.48485589),
    "U": (-13.5745904, -1029.82456413, -1485.26398105, -2042.5727046, -2713.44632457),
    "H": (-13.54887564, -1029.79887659, -1485.2382935, -2042.54701705, -2713.42063702),
    "G": (-13.90303183, -1030.25891228, -1485.71166277, -2043.01812778, -2713.88796536),
}

# qm9pack column for each task, in TASK_NAMES order, and whether it is in Hartree.
_TARGET_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("Dipole_debye", False),
    ("Polarizability_bohr3", False),
    ("HOMO_au", True),
    ("LUMO_au", True),
    ("R2_bohr2", False),
    ("ZPVE_au", True),
    ("InternalEnergy_0K_au", True),
    ("InternalEnergy_298K_au", True),
    ("Enthalphy_298K_au", True),  # sic, qm9pack's spelling
    ("GibbsFreeEnergy_298K_au", True),
    ("Heatcapacity_Cv_cal_mol_K", False),
)
_CSV_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")

FEATURE_MODES = ("reference", "rdkit")
NODE_FEATURES = ("is_H", "is_C", "is_N", "is_O", "is_F", "atomic_number", "aromatic", "sp", "sp2", "sp3", "num_hs")
BOND_TYPES = ("single", "double", "triple", "aromatic")
EDGE_FEATURES = BOND_TYPES + ("distance",)

# Covalent radii in Angstrom (Cordero et al., Dalton Trans. 2008; sp3 carbon) used to check that the
# SMILES bonds agree with the 3-D geometry.
_COVALENT_RADII = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57}
_BONDED_TOLERANCE = 1.3  # a SMILES bond longer than 1.3 x the radii sum contradicts the geometry
_NONBONDED_TOLERANCE = 1.1  # two heavy atoms this close must be bonded

SPLIT_SEED = 0
SPLITS = ("train", "val", "test")
# Positions in the fixed permutation. "full" is the reference protocol; "reduced" keeps the same test
# set and takes its validation and training molecules from the full protocol's, so every reduced split
# is a subset of the matching full split. "tiny" is for tests: its 400 molecules are the first
# positions, so that its cache builds in a second; its splits are not subsets of the full ones.
PROTOCOLS: dict[str, dict[str, range]] = {
    "full": {"test": range(0, 10_000), "val": range(10_000, 20_000), "train": range(20_000, N_MOLECULES)},
    "reduced": {"test": range(0, 10_000), "val": range(10_000, 12_000), "train": range(20_000, 30_000)},
    "tiny": {"test": range(0, 100), "val": range(100, 200), "train": range(200, 400)},
}

CACHE_VERSION = 1
CACHE_ENV = "GO4ALIGN_CACHE"


# ----------------------------------------------------------------------------------------------
# Raw data and targets


def qm9pack_data_dir() -> Path:
    """The folder with qm9pack's CSV files, found without importing qm9pack (its import needs
    pkg_resources, which recent setuptools dropped)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or spec.origin is None:
        raise ImportError(f"qm9pack is not installed. {INSTALL_HINT}")
    return Path(spec.origin).parent / "data"


def reference_targets(raw: np.ndarray, stoichiometry: np.ndarray) -> np.ndarray:
    """Converts qm9pack's target columns to the reference units.

    `raw` is [N, 11] in `_TARGET_COLUMNS` order (Hartree for energies); `stoichiometry` is [N, 5], the
    number of H, C, N, O, F atoms. Energies become eV (x `HARTREE_TO_EV`) and U0, U, H, G become
    atomisation energies (total minus the sum of `ATOMREFS_EV` over the atoms).
    """
    raw = np.asarray(raw, dtype=np.float64)
    stoichiometry = np.asarray(stoichiometry, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != NUM_TASKS:
        raise ValueError(f"raw targets must have shape [N, {NUM_TASKS}], got {raw.shape}")
    if stoichiometry.shape != (raw.shape[0], len(ELEMENTS)):
        raise ValueError(f"stoichiometry must have shape [{raw.shape[0]}, {len(ELEMENTS)}], got {stoichiometry.shape}")
    hartree = np.array([in_hartree for _, in_hartree in _TARGET_COLUMNS])
    targets = raw * np.where(hartree, HARTREE_TO_EV, 1.0)
    for task, atomref in ATOMREFS_EV.items():
        targets[:, TASK_NAMES.index(task)] -= stoichiometry @ np.array(atomref)
    return targets


class RawQM9(NamedTuple):
    """qm9pack's molecules in file order: what featurisation needs plus the converted targets."""

    qm9_id: np.ndarray  # [N] the original QM9 index (1..133885)
    smiles: list[str]
    elements: list[str]  # qm9pack's Python-literal strings, parsed by `parse_elements`
    xyz: list[str]  # nested-list strings in Angstrom, parsed by `parse_xyz`
    targets: np.ndarray  # [N, 11] float64, reference units


def read_raw(data_dir: str | os.PathLike | None = None) -> RawQM9:
    """Reads qm9pack's three CSV parts from `data_dir` (default: the installed qm9pack)."""
    folder = qm9pack_data_dir() if data_dir is None else Path(data_dir)
    paths = [folder / name for name in _CSV_FILES]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"QM9 CSV files not found: {missing}. {INSTALL_HINT}")
    # The frequency and Mulliken columns make some fields longer than csv's default limit.
    csv.field_size_limit(1 << 30)
    qm9_id, smiles, elements, xyz, raw, stoichiometry = [], [], [], [], [], []
    for path in paths:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            column = {name: header.index(name) for name in ("Index", "SMILES", "Elements", "XYZ_Ang", "Stoichiometry")}
            target_columns = [header.index(name) for name, _ in _TARGET_COLUMNS]
            for row in reader:
                qm9_id.append(int(row[column["Index"]]))
                smiles.append(row[column["SMILES"]])
                elements.append(row[column["Elements"]])
                xyz.append(row[column["XYZ_Ang"]])
                raw.append([float(row[i]) for i in target_columns])
                stoichiometry.append([int(v) for v in row[column["Stoichiometry"]].strip("[]").split(",")])
    if len(qm9_id) != N_MOLECULES:
        raise ValueError(f"expected {N_MOLECULES} molecules in {folder}, found {len(qm9_id)}")
    return RawQM9(
        np.array(qm9_id, dtype=np.int32),
        smiles,
        elements,
        xyz,
        reference_targets(np.array(raw), np.array(stoichiometry)),
    )


def parse_elements(text: str) -> list[str]:
    """`"['C','H']"` -> `['C', 'H']` (qm9pack's single-quoted literal is not JSON)."""
    symbols = [token.strip().strip("'\"") for token in text.strip().strip("[]").split(",")]
    unknown = sorted(set(symbols) - set(ELEMENTS))
    if unknown:
        raise ValueError(f"unknown elements {unknown} in {text!r}; QM9 has only {ELEMENTS}")
    return symbols


def parse_xyz(text: str, num_atoms: int) -> np.ndarray:
    """Nested-list coordinate string -> [num_atoms, 3]; tokens like `0.` rule out a JSON parser."""
    values = np.array([float(v) for v in text.replace("[", "").replace("]", "").split(",")])
    if values.size != 3 * num_atoms:
        raise ValueError(f"expected {3 * num_atoms} coordinates for {num_atoms} atoms, got {values.size}")
    return values.reshape(num_atoms, 3)


def split_permutation(seed: int = SPLIT_SEED) -> np.ndarray:
    """The fixed shuffle of the 130,831 molecules that all splits index into.

    numpy's legacy RandomState stream is frozen (NEP 19), so the permutation is the same on every
    numpy version. (The reference shuffles with torch after seeding, so its split changes with the
    training seed; here it is fixed and the training seed only affects the run.)
    """
    return np.random.RandomState(seed).permutation(N_MOLECULES)


def split_range(split: str, protocol: str = "full") -> range:
    """Positions in `split_permutation()` of `split` ("train", "val", "test") under `protocol`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown QM9 protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown QM9 split {split!r}; choose one of {SPLITS}")
    return PROTOCOLS[protocol][split]


def split_ranges(protocol: str = "full", sizes: Mapping[str, int | None] | None = None) -> dict[str, range]:
    """The positions of every split of `protocol`; `sizes` (e.g. `{"train": 20_000}`) keeps the first
    molecules of a split, so that a smaller protocol needs only a cache of the first positions."""
    sizes = dict(sizes or {})
    unknown = sorted(set(sizes) - set(SPLITS))
    if unknown:
        raise ValueError(f"sizes names unknown QM9 split(s) {unknown}; choose from {SPLITS}")
    ranges = {}
    for split in SPLITS:
        positions, size = split_range(split, protocol), sizes.get(split)
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= len(positions):
                raise ValueError(
                    f"{split}_size must be an int in [1, {len(positions)}] for the {protocol!r} protocol, got {size!r}"
                )
            positions = positions[:size]
        ranges[split] = positions
    return ranges


# ----------------------------------------------------------------------------------------------
# Featurisation


class MoleculeArrays(NamedTuple):
    """One featurised molecule, compact: features are small integers, bonds use local indices."""

    node_features: np.ndarray  # [n, 11] uint8, NODE_FEATURES
    bonds: np.ndarray  # [b, 2] uint8, each bond once
    bond_types: np.ndarray  # [b] uint8, index into BOND_TYPES
    bonds_from_smiles: bool  # False: RDKit's DetermineConnectivity fallback, single bonds only


def _check_feature_mode(features: str) -> None:
    if features not in FEATURE_MODES:
        raise ValueError(f"unknown QM9 feature mode {features!r}; choose one of {FEATURE_MODES}")


def _import_rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError as error:
        raise ImportError(f"RDKit is not installed. {INSTALL_HINT}") from error
    RDLogger.DisableLog("rdApp.*")
    return Chem


def featurise_molecule(
    smiles: str, elements: Sequence[str], positions: np.ndarray, features: str = "reference"
) -> MoleculeArrays:
    """Node features and bonds of one molecule, atoms in the XYZ order.

    Bonds come from the SMILES when its heavy atoms are in the XYZ order and agree with the geometry
    (bonded pairs within 1.3x, non-bonded heavy pairs beyond 1.1x the covalent radii sum) and each
    hydrogen's nearest heavy atom carries as many hydrogens as the SMILES says; otherwise from RDKit's
    DetermineConnectivity on the coordinates (connectivity only: every bond single).

    `features="reference"` follows torch_geometric's featurisation of its SDF, read unsanitised: the
    aromatic/sp/sp2/sp3 columns are all 0 and bonds are Kekule (never aromatic); the bonds
    themselves come from the SMILES, not from that SDF (see the module docstring). `features="rdkit"`
    fills those columns and the aromatic bond type from the sanitised SMILES, a documented deviation
    from the reference. Hydrogens are never aromatic nor sp/sp2/sp3 in either mode.
    """
    _check_feature_mode(features)
    Chem = _import_rdkit()
    elements = list(elements)
    positions = np.asarray(positions, dtype=np.float64)
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    radii = np.array([_COVALENT_RADII[e] for e in elements])
    radius_sum = radii[:, None] + radii[None, :]

    node = np.zeros((len(elements), len(NODE_FEATURES)), dtype=np.uint8)
    node[np.arange(len(elements)), [ELEMENTS.index(e) for e in elements]] = 1
    node[:, 5] = [ATOMIC_NUMBERS[e] for e in elements]

    mol = Chem.MolFromSmiles(smiles)
    from_smiles = mol is not None and _smiles_matches_geometry(mol, elements, distances, radius_sum)
    if from_smiles:
        bonds, bond_types = _bonds_from_smiles(Chem, mol, elements, distances, features)
        if features == "rdkit":
            _set_rdkit_atom_features(Chem, mol, elements, node)
    else:
        bonds, bond_types = _bonds_from_geometry(Chem, elements, positions)

    is_hydrogen = np.array([e == "H" for e in elements], dtype=np.uint8)
    np.add.at(node[:, 10], bonds[:, 0], is_hydrogen[bonds[:, 1]])
    np.add.at(node[:, 10], bonds[:, 1], is_hydrogen[bonds[:, 0]])
    return MoleculeArrays(node, bonds.astype(np.uint8), bond_types.astype(np.uint8), from_smiles)


def _heavy_indices(elements: Sequence[str]) -> np.ndarray:
    return np.array([i for i, e in enumerate(elements) if e != "H"], dtype=np.int64)


def _nearest_heavy(elements: Sequence[str], distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XYZ index of every hydrogen and of the heavy atom nearest to it."""
    heavy = _heavy_indices(elements)
    hydrogens = np.array([i for i, e in enumerate(elements) if e == "H"], dtype=np.int64)
    nearest = heavy[np.argmin(distances[np.ix_(hydrogens, heavy)], axis=1)] if hydrogens.size else hydrogens
    return hydrogens, nearest


def _bond_atoms(mol) -> np.ndarray:
    """[b, 2] RDKit atom indices of the bonds (RDKit's sequence wrappers are slow; index directly)."""
    bonds = [mol.GetBondWithIdx(k) for k in range(mol.GetNumBonds())]
    return np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in bonds], dtype=np.int64).reshape(-1, 2)


def _smiles_matches_geometry(mol, elements: Sequence[str], distances: np.ndarray, radius_sum: np.ndarray) -> bool:
    heavy = _heavy_indices(elements)
    atoms = [mol.GetAtomWithIdx(k) for k in range(mol.GetNumAtoms())]
    if [atom.GetSymbol() for atom in atoms] != [elements[i] for i in heavy]:
        return False
    pairs = _bond_atoms(mol)
    bonded = np.zeros((len(heavy), len(heavy)), dtype=bool)
    bonded[pairs[:, 0], pairs[:, 1]] = bonded[pairs[:, 1], pairs[:, 0]] = True
    heavy_distance = distances[np.ix_(heavy, heavy)] / radius_sum[np.ix_(heavy, heavy)]
    off_diagonal = ~np.eye(len(heavy), dtype=bool)
    if (heavy_distance[bonded] > _BONDED_TOLERANCE).any():
        return False
    if (heavy_distance[~bonded & off_diagonal] < _NONBONDED_TOLERANCE).any():
        return False
    hydrogens, nearest = _nearest_heavy(elements, distances)
    if (distances[hydrogens, nearest] / radius_sum[hydrogens, nearest] > _BONDED_TOLERANCE).any():
        return False
    heavy_position = np.full(len(elements), -1)
    heavy_position[heavy] = np.arange(len(heavy))
    counts = np.bincount(heavy_position[nearest], minlength=len(heavy))
    return counts.tolist() == [atom.GetTotalNumHs() for atom in atoms]


def _bonds_from_smiles(
    Chem, mol, elements: Sequence[str], distances: np.ndarray, features: str
) -> tuple[np.ndarray, np.ndarray]:
    if features == "reference":
        mol = Chem.Mol(mol)
        Chem.Kekulize(mol, clearAromaticFlags=True)
    type_index = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2, Chem.BondType.AROMATIC: 3}
    heavy = _heavy_indices(elements)
    hydrogens, nearest = _nearest_heavy(elements, distances)
    bonds = np.concatenate([heavy[_bond_atoms(mol)], np.stack([nearest, hydrogens], axis=1)])
    heavy_types = [type_index[mol.GetBondWithIdx(k).GetBondType()] for k in range(mol.GetNumBonds())]
    types = np.array(heavy_types + [0] * len(hydrogens), dtype=np.int64)
    return bonds, types


def _set_rdkit_atom_features(Chem, mol, elements: Sequence[str], node: np.ndarray) -> None:
    hybridisation_column = {Chem.HybridizationType.SP: 7, Chem.HybridizationType.SP2: 8, Chem.HybridizationType.SP3: 9}
    for k, xyz_index in enumerate(_heavy_indices(elements)):
        atom = mol.GetAtomWithIdx(k)
        node[xyz_index, 6] = atom.GetIsAromatic()
        column = hybridisation_column.get(atom.GetHybridization())
        if column is not None:
            node[xyz_index, column] = 1


def _bonds_from_geometry(Chem, elements: Sequence[str], positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from rdkit.Chem import rdDetermineBonds

    block = "\n".join(
        [str(len(elements)), ""] + [f"{e} {x:.10f} {y:.10f} {z:.10f}" for e, (x, y, z) in zip(elements, positions)]
    )
    mol = Chem.MolFromXYZBlock(block)
    rdDetermineBonds.DetermineConnectivity(mol)
    bonds = _bond_atoms(mol)
    return bonds, np.zeros(len(bonds), dtype=np.int64)


def _featurise_chunk(job: tuple[list[tuple[str, str, str]], str]) -> list[tuple[MoleculeArrays, np.ndarray]]:
    molecules, features = job
    out = []
    for smiles, elements_text, xyz_text in molecules:
        elements = parse_elements(elements_text)
        positions = parse_xyz(xyz_text, len(elements))
        out.append((featurise_molecule(smiles, elements, positions, features), positions))
    return out


# ----------------------------------------------------------------------------------------------
# Cache


@dataclass(frozen=True)
class QM9Cache:
    """Featurised molecules at permutation positions 0..len-1, in that order, packed with offsets.

    Molecule k has atoms `atom_offsets[k]:atom_offsets[k+1]` of `node_features` and `positions`, and
    bonds `bond_offsets[k]:bond_offsets[k+1]` of `bonds` (local atom indices) and `bond_types`.
    """

    features: str
    seed: int
    qm9_id: np.ndarray  # [M] int32, original QM9 index
    row: np.ndarray  # [M] int32, row in qm9pack's (= torch_geometric's) order
    targets: np.ndarray  # [M, 11] float64, reference units
    atom_offsets: np.ndarray  # [M + 1] int64
    node_features: np.ndarray  # [A, 11] uint8
    positions: np.ndarray  # [A, 3] float32, Angstrom
    bond_offsets: np.ndarray  # [M + 1] int64
    bonds: np.ndarray  # [B, 2] uint8
    bond_types: np.ndarray  # [B] uint8
    bonds_from_smiles: np.ndarray  # [M] bool

    def __len__(self) -> int:
        return len(self.row)

    def graph(self, k: int) -> MoleculeGraph:
        atoms = slice(self.atom_offsets[k], self.atom_offsets[k + 1])
        bonds = slice(self.bond_offsets[k], self.bond_offsets[k + 1])
        return MoleculeGraph(
            node_features=torch.from_numpy(self.node_features[atoms].astype(np.float32)),
            positions=torch.from_numpy(self.positions[atoms]),
            bonds=torch.from_numpy(self.bonds[bonds].astype(np.int64)),
            bond_types=torch.from_numpy(self.bond_types[bonds].astype(np.int64)),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Writes atomically, so an interrupted build never leaves a truncated cache behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays["features"] = np.array(self.features)
        arrays["seed"] = np.array(self.seed)
        arrays["version"] = np.array(CACHE_VERSION)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            try:
                np.savez(handle, **arrays)
            except BaseException:
                os.unlink(handle.name)
                raise
        os.chmod(handle.name, 0o644)  # temporary files are private (0600); a cache is not
        os.replace(handle.name, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> QM9Cache:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["version"]) != CACHE_VERSION:
                raise ValueError(
                    f"{path} is a version {int(stored['version'])} QM9 cache; "
                    f"this go4align reads version {CACHE_VERSION}"
                )
            values = {f.name: stored[f.name] for f in fields(cls)}
        values["features"] = str(values["features"])
        values["seed"] = int(values["seed"])
        return cls(**values)


def default_cache_dir() -> Path:
    """`$GO4ALIGN_CACHE/qm9` when the variable is set, else `~/.cache/go4align/qm9`."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "go4align") / "qm9"


def cache_path(cache_dir: str | os.PathLike, features: str, seed: int, n_first: int) -> Path:
    size = "all" if n_first == N_MOLECULES else f"first{n_first}"
    return Path(cache_dir) / f"qm9-v{CACHE_VERSION}-{features}-seed{seed}-{size}.npz"


def build_cache(
    raw: RawQM9, n_first: int = N_MOLECULES, features: str = "reference", seed: int = SPLIT_SEED, processes: int = 2
) -> QM9Cache:
    """Featurises the molecules at the first `n_first` permutation positions (in memory).

    `processes` > 1 featurises in a process pool; 1 runs in this process.
    """
    _check_feature_mode(features)
    if not 1 <= n_first <= N_MOLECULES:
        raise ValueError(f"n_first must be in 1..{N_MOLECULES}, got {n_first}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    _import_rdkit()
    rows = split_permutation(seed)[:n_first]
    molecules = [(raw.smiles[r], raw.elements[r], raw.xyz[r]) for r in rows]
    # chunks of at most 500 keep the pool busy and its messages small; at least one chunk per process
    chunk = min(500, -(-n_first // processes))
    jobs = [(molecules[i : i + chunk], features) for i in range(0, len(molecules), chunk)]
    if processes == 1 or len(jobs) == 1:
        results = [m for job in jobs for m in _featurise_chunk(job)]
    else:
        with multiprocessing.Pool(processes) as pool:
            results = [m for part in pool.imap(_featurise_chunk, jobs) for m in part]
    arrays = [arrays for arrays, _ in results]
    atom_counts = [len(a.node_features) for a in arrays]
    bond_counts = [len(a.bonds) for a in arrays]
    return QM9Cache(
        features=features,
        seed=seed,
        qm9_id=raw.qm9_id[rows],
        row=rows.astype(np.int32),
        targets=raw.targets[rows],
        atom_offsets=np.concatenate([[0], np.cumsum(atom_counts)]).astype(np.int64),
        node_features=np.concatenate([a.node_features for a in arrays]),
        positions=np.concatenate([p for _, p in results]).astype(np.float32),
        bond_offsets=np.concatenate([[0], np.cumsum(bond_counts)]).astype(np.int64),
        bonds=np.concatenate([a.bonds for a in arrays]),
        bond_types=np.concatenate([a.bond_types for a in arrays]),
        bonds_from_smiles=np.array([a.bonds_from_smiles for a in arrays]),
    )


def load_or_build_cache(
    features: str = "reference",
    n_first: int = N_MOLECULES,
    *,
    seed: int = SPLIT_SEED,
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    processes: int = 2,
) -> QM9Cache:
    """The cache covering the first `n_first` permutation positions: the whole-dataset cache when one
    exists, else the one for exactly `n_first`, built (from qm9pack, or `data_dir`) and saved if
    missing. Returns a cache of at least `n_first` molecules."""
    _check_feature_mode(features)
    if not 1 <= n_first <= N_MOLECULES:
        raise ValueError(f"n_first must be in 1..{N_MOLECULES}, got {n_first}")
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
    for path in (cache_path(folder, features, seed, N_MOLECULES), cache_path(folder, features, seed, n_first)):
        if path.is_file():
            return QM9Cache.load(path)
    cache = build_cache(read_raw(data_dir), n_first, features, seed, processes)
    cache.save(cache_path(folder, features, seed, n_first))
    return cache


# ----------------------------------------------------------------------------------------------
# Dataset


class MoleculeGraph(NamedTuple):
    """One molecule: the item a `QM9Dataset` yields next to its targets."""

    node_features: Tensor  # [n, 11] float32, NODE_FEATURES
    positions: Tensor  # [n, 3] float32, Angstrom
    bonds: Tensor  # [b, 2] int64, each bond once
    bond_types: Tensor  # [b] int64, index into BOND_TYPES


class QM9Dataset(Dataset):
    """Molecules `positions` of a cache, as `(MoleculeGraph, standardised targets Tensor[11])`."""

    def __init__(self, cache: QM9Cache, positions: range, stats: TargetStats) -> None:
        if len(positions) and (positions.start < 0 or max(positions) >= len(cache)):
            raise ValueError(f"positions {positions} exceed the cache's {len(cache)} molecules")
        self.cache = cache
        self.positions = positions
        self.stats = stats
        targets = torch.from_numpy(cache.targets[positions.start : positions.stop : positions.step])
        self._targets = stats.standardise(targets).to(torch.float32)

    def __repr__(self) -> str:
        return f"QM9Dataset(features={self.cache.features!r}, positions={self.positions}, seed={self.cache.seed})"

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[MoleculeGraph, Tensor]:
        return self.cache.graph(self.positions[index]), self._targets[index]


def load_qm9(
    protocol: str = "reduced",
    features: str = "reference",
    *,
    sizes: Mapping[str, int | None] | None = None,
    seed: int = SPLIT_SEED,
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    processes: int = 2,
) -> dict[str, QM9Dataset]:
    """The train/val/test datasets of `protocol` ("full", "reduced" or "tiny", see `PROTOCOLS`), each
    cut to its first `sizes[split]` molecules where given (see `split_ranges`).

    Targets are standardised with the training split's mean and std (`dataset.stats`, the same object
    for the three splits). The reference computes them over the whole dataset by accident (it reads
    `train_dataset.data`, which is the unsliced storage); the difference is negligible.
    """
    ranges = split_ranges(protocol, sizes)
    n_first = max(r.stop for r in ranges.values())
    cache = load_or_build_cache(
        features, n_first, seed=seed, cache_dir=cache_dir, data_dir=data_dir, processes=processes
    )
    train = ranges["train"]
    stats = TargetStats.from_targets(torch.from_numpy(cache.targets[train.start : train.stop]))
    return {split: QM9Dataset(cache, ranges[split], stats) for split in SPLITS}


# ----------------------------------------------------------------------------------------------
# Batching


def _float_to(tensor: Tensor, device, dtype) -> Tensor:
    return tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)


@dataclass(frozen=True)
class GraphBlock:
    """Molecules of similar size padded to a common atom count n: complete graphs, no self loops."""

    node_features: Tensor  # [b, n, 11]
    edge_attr: Tensor  # [b, n, n, 5]: bond one-hot (zero for non-bonded pairs) and distance
    node_mask: Tensor  # [b, n] bool, False on padding
    graph_index: Tensor  # [b] int64, row of each molecule in the batch

    def to(self, device=None, dtype=None) -> GraphBlock:
        return GraphBlock(*(_float_to(getattr(self, f.name), device, dtype) for f in fields(self)))


@dataclass(frozen=True)
class QM9Batch:
    """A batch of molecules as a few ``GraphBlock`` objects; models return rows in the original item order."""

    blocks: tuple[GraphBlock, ...]
    num_graphs: int

    def __len__(self) -> int:
        return self.num_graphs

    def to(self, device=None, dtype=None) -> QM9Batch:
        """Moves to `device`; `dtype` converts the floating tensors only."""
        return QM9Batch(tuple(block.to(device, dtype) for block in self.blocks), self.num_graphs)


def _pad_block(graphs: Sequence[MoleculeGraph], graph_index: np.ndarray) -> GraphBlock:
    x = pad_sequence([g.node_features for g in graphs], batch_first=True)
    positions = pad_sequence([g.positions for g in graphs], batch_first=True)
    count, size, _ = x.shape
    atoms = torch.tensor([len(g.node_features) for g in graphs])
    mask = torch.arange(size) < atoms[:, None]
    molecule = torch.cat([torch.full((len(g.bonds),), k, dtype=torch.int64) for k, g in enumerate(graphs)])
    bonds = torch.cat([g.bonds for g in graphs])
    types = torch.cat([g.bond_types for g in graphs])
    bond_one_hot = torch.zeros(count, size, size, len(BOND_TYPES))
    bond_one_hot[molecule, bonds[:, 0], bonds[:, 1], types] = 1.0
    bond_one_hot[molecule, bonds[:, 1], bonds[:, 0], types] = 1.0
    distance = (positions[:, :, None, :] - positions[:, None, :, :]).norm(dim=-1, keepdim=True)
    edge_attr = torch.cat([bond_one_hot, distance], dim=-1)
    return GraphBlock(x, edge_attr, mask, torch.from_numpy(graph_index))


def batch_graphs(graphs: Sequence[MoleculeGraph], num_blocks: int = 4) -> QM9Batch:
    """Sorts molecules by size and pads them in `num_blocks` equal-count blocks, which cuts the padding
    of a complete-graph batch to a few percent; distances are computed here, per batch."""
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
    if not graphs:
        raise ValueError("cannot batch an empty list of molecules")
    sizes = np.array([len(g.node_features) for g in graphs])
    order = np.argsort(sizes, kind="stable")
    parts = [p for p in np.array_split(order, min(num_blocks, len(graphs))) if len(p)]
    blocks = tuple(_pad_block([graphs[i] for i in part], part.astype(np.int64)) for part in parts)
    return QM9Batch(blocks, len(graphs))


def collate(items: Sequence[tuple[MoleculeGraph, Tensor]], num_blocks: int = 4) -> tuple[QM9Batch, dict[str, Tensor]]:
    """DataLoader `collate_fn`: `(QM9Batch, {task: Tensor[B] of standardised targets})`."""
    graphs = [graph for graph, _ in items]
    targets = torch.stack([target for _, target in items])
    return batch_graphs(graphs, num_blocks), {task: targets[:, k] for k, task in enumerate(TASK_NAMES)}
