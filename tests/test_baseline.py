"""OrganicBaseline on real FAISS: mechanics on random unit vectors, recall and neighbours on real
static-profile embeddings of simulated prompts."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import pytest

from distillguard.features.baseline import (
    BaselineArtifactError,
    BaselineIdentityError,
    BaselineNotFittedError,
    OrganicBaseline,
)
from distillguard.features.embedding import BASE_MODEL, EmbedderIdentity


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


RANDOM_ID = EmbedderIdentity("static", BASE_MODEL, 16, "0" * 32)


@dataclass
class Traffic:
    X: np.ndarray            # organic prompt vectors
    codes: np.ndarray        # owner account code per row
    texts: list[str]
    harvest: list[np.ndarray]  # one matrix per harvesting account
    identity: EmbedderIdentity


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    """Static-profile embeddings of the simulator's organic prompts (60 accounts, ~6k rows)."""
    from distillguard.data.simulator import simulate
    from distillguard.data.simulator_config import SimulatorConfig
    from distillguard.features.embedding import load_embedder

    sim = simulate(SimulatorConfig(accounts=60, seed=1))
    emb = load_embedder("static")
    labels = dict(zip(sim.labels["account_id"], sim.labels["label"]))
    ev = sim.events[sim.events["prompt"].str.strip() != ""]
    vecs = emb.encode(ev["prompt"].tolist())
    keep = np.linalg.norm(vecs, axis=1) > 0.5
    ev, vecs = ev[keep], vecs[keep]
    organic = ev["account_id"].map(labels).to_numpy() == 0
    codes = ev["account_id"].astype("category").cat.codes.to_numpy().astype(np.int64)
    harvest = [vecs[(ev["account_id"] == a).to_numpy()] for a, lab in labels.items() if lab == 1]
    return Traffic(vecs[organic], codes[organic], ev["prompt"][organic].tolist(), harvest, emb.identity)


@pytest.fixture(scope="module")
def ivf_baseline(traffic: Traffic) -> OrganicBaseline:
    return OrganicBaseline(exact_max=500, n_clusters=16, seed=3).fit(
        traffic.X, traffic.codes, traffic.identity, texts=traffic.texts)


def test_unfitted_use_is_refused(tmp_path: Path) -> None:
    b = OrganicBaseline()
    x = _unit(np.random.default_rng(0), 3, 16)
    for call in (lambda: b.knn(x), lambda: b.assign_clusters(x), lambda: b.rff_features(x),
                 lambda: b.neighbour_texts([0]), lambda: b.save(tmp_path / "b")):
        with pytest.raises(BaselineNotFittedError, match="not fitted"):
            call()
    assert not (tmp_path / "b").exists()


def test_init_stores_hyper_parameters_only() -> None:
    b = OrganicBaseline(n_clusters=7, seed=5)
    assert b.get_params()["n_clusters"] == 7 and b.get_params()["seed"] == 5
    assert not [k for k in vars(b) if k.endswith("_")]


def test_fit_validates_inputs() -> None:
    rng = np.random.default_rng(0)
    X = _unit(rng, 50, 16)
    codes = np.zeros(50, dtype=np.int64)
    with pytest.raises(ValueError, match="shape"):
        OrganicBaseline().fit(X[:, :8], codes, RANDOM_ID)
    with pytest.raises(ValueError, match="unit-norm"):
        OrganicBaseline().fit(X * 2, codes, RANDOM_ID)
    with pytest.raises(ValueError, match="account_codes"):
        OrganicBaseline().fit(X, codes[:10], RANDOM_ID)
    with pytest.raises(ValueError, match="n_clusters"):
        OrganicBaseline(n_clusters=0).fit(X, codes, RANDOM_ID)


def test_per_account_cap_is_applied() -> None:
    rng = np.random.default_rng(1)
    codes = np.r_[np.full(500, 99), np.repeat(np.arange(10), 10)].astype(np.int64)
    rng.shuffle(codes)
    X = _unit(rng, len(codes), 16)
    texts = [f"p{i}" for i in range(len(codes))]
    b = OrganicBaseline(max_prompts_per_account=64, exact_max=10_000).fit(X, codes, RANDOM_ID, texts=texts)
    kept_codes, counts = np.unique(b.owners_, return_counts=True)
    per = dict(zip(kept_codes.tolist(), counts.tolist()))
    assert per[99] == 64 and all(per[c] == 10 for c in range(10))
    assert b.index_.ntotal == len(b.owners_) == 164
    # kept rows stay aligned with their owners and texts
    assert np.array_equal(b.owners_, codes[b.kept_rows_])
    assert b.texts_ == [texts[i] for i in b.kept_rows_]
    # seeded: the same sample each time, another seed another sample
    again = OrganicBaseline(max_prompts_per_account=64, exact_max=10_000).fit(X, codes, RANDOM_ID)
    other = OrganicBaseline(max_prompts_per_account=64, exact_max=10_000, seed=1).fit(X, codes, RANDOM_ID)
    assert np.array_equal(again.kept_rows_, b.kept_rows_) and not np.array_equal(other.kept_rows_, b.kept_rows_)


def test_cluster_distribution_is_a_smoothed_probability_vector() -> None:
    rng = np.random.default_rng(2)
    X = _unit(rng, 400, 16)
    b = OrganicBaseline(n_clusters=64, max_prompts_per_account=1000).fit(
        X, np.arange(400, dtype=np.int64) % 5, RANDOM_ID)
    assert b.centroids_.shape == (20, 16)  # min(n_clusters, n // 20)
    np.testing.assert_allclose(np.linalg.norm(b.centroids_, axis=1), 1.0, atol=1e-5)
    p = b.cluster_distribution_
    assert p.shape == (20,) and np.all(p > 0) and abs(p.sum() - 1.0) < 1e-12
    labels = b.assign_clusters(X)
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < 20


def test_exact_index_at_or_below_exact_max() -> None:
    X = _unit(np.random.default_rng(3), 300, 16)
    b = OrganicBaseline(exact_max=300).fit(X, np.arange(300, dtype=np.int64) // 3, RANDOM_ID)
    assert b.index_kind_ == "flat" and b.index_recall_at_10_ == 1.0


def test_approximate_index_above_exact_max_records_plausible_recall(
        traffic: Traffic, ivf_baseline: OrganicBaseline) -> None:
    b = ivf_baseline
    assert len(b.owners_) > 500 and b.index_kind_.startswith("ivf")
    assert isinstance(b.index_, faiss.IndexIVFFlat) and b.index_.nprobe == 16
    assert 0.8 <= b.index_recall_at_10_ <= 1.0
    # The measurement is real: probing every list is exact search, probing one is not.
    nlist = b.index_.nlist
    full = OrganicBaseline(exact_max=500, nprobe=nlist, seed=3).fit(traffic.X, traffic.codes, traffic.identity)
    one = OrganicBaseline(exact_max=500, nprobe=1, seed=3).fit(traffic.X, traffic.codes, traffic.identity)
    assert full.index_recall_at_10_ == pytest.approx(1.0)
    assert 0.2 < one.index_recall_at_10_ < b.index_recall_at_10_


def test_knn_with_exclude_owner_never_returns_that_owner(
        traffic: Traffic, ivf_baseline: OrganicBaseline) -> None:
    b = ivf_baseline
    rows = np.arange(len(b.owners_))[::7]
    Q, owners = traffic.X[b.kept_rows_[rows]], b.owners_[rows]
    d, i = b.knn(Q, k=10)
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == i.shape == (len(rows), 10)
    assert np.mean(d[:, 0] < 1e-4) > 0.9  # without exclusion a row mostly finds itself
    d, i = b.knn(Q, k=10, exclude_owner=owners)
    assert np.all(i >= 0) and not np.any(b.owners_[i] == owners[:, None])
    assert np.all(np.diff(d, axis=1) >= -1e-6)
    # A scalar excludes one account for every query.
    code = int(np.bincount(b.owners_).argmax())
    _, i = b.knn(Q, k=10, exclude_owner=code)
    assert not np.any(b.owners_[i] == code)
    assert b.neighbour_texts(i[0]) == [b.texts_[j] for j in i[0]]


def test_knn_fills_missing_neighbours_with_distance_two() -> None:
    X = _unit(np.random.default_rng(4), 30, 16)
    codes = np.r_[np.zeros(25), np.ones(5)].astype(np.int64)
    b = OrganicBaseline(max_prompts_per_account=100).fit(X, codes, RANDOM_ID)
    d, i = b.knn(X[:2], k=10, exclude_owner=np.array([0, 0]))
    assert np.all(i[:, :5] >= 0) and np.all(i[:, 5:] == -1) and np.all(d[:, 5:] == 2.0)
    d, i = b.knn(X[:1], k=40)
    assert np.all(i[0, 30:] == -1) and np.all(d[0, 30:] == 2.0)
    assert b.neighbour_texts(i) == [[None] * 40]


def test_rff_mmd_separates_harvesters_from_organic(traffic: Traffic) -> None:
    half = np.unique(traffic.codes)[::2]
    fit_rows = np.isin(traffic.codes, half)
    b = OrganicBaseline().fit(traffic.X[fit_rows], traffic.codes[fit_rows], traffic.identity)
    assert b.rff_features(traffic.X[:3]).shape == (3, 256) and b.sample_.shape[0] <= 2048

    def mmd(X: np.ndarray) -> float:
        return float(np.linalg.norm(b.rff_features(X).mean(axis=0) - b.organic_rff_mean_))

    held_out = traffic.X[~fit_rows]
    harvest = np.concatenate(traffic.harvest)
    assert mmd(held_out) < mmd(harvest)
    q = b.reference_knn_distance_
    assert 0.0 <= q[0.01] <= q[0.5] <= q[0.99] <= 2.0


def test_save_load_round_trip_gives_identical_results(
        tmp_path: Path, traffic: Traffic, ivf_baseline: OrganicBaseline) -> None:
    b = ivf_baseline
    b.save(tmp_path / "baseline")
    assert sorted(p.name for p in (tmp_path / "baseline").iterdir()) == [
        "arrays.npz", "index.faiss", "meta.json", "texts.parquet"]
    loaded = OrganicBaseline.load(tmp_path / "baseline", expected_identity=traffic.identity)
    Q = traffic.X[::5]
    for kwargs in ({}, {"exclude_owner": traffic.codes[::5]}):
        d0, i0 = b.knn(Q, k=10, **kwargs)
        d1, i1 = loaded.knn(Q, k=10, **kwargs)
        assert np.array_equal(i0, i1) and np.array_equal(d0, d1)
    assert loaded.get_params() == b.get_params() and loaded.identity_ == b.identity_
    assert (loaded.index_kind_, loaded.index_recall_at_10_) == (b.index_kind_, b.index_recall_at_10_)
    assert loaded.reference_knn_distance_ == b.reference_knn_distance_
    assert loaded.texts_ == b.texts_
    for attr in ("owners_", "kept_rows_", "centroids_", "cluster_distribution_", "sample_", "organic_rff_mean_"):
        assert np.array_equal(getattr(loaded, attr), getattr(b, attr)), attr
    assert np.array_equal(loaded.rff_features(Q), b.rff_features(Q))
    assert np.array_equal(loaded.assign_clusters(Q), b.assign_clusters(Q))
    meta = json.loads((tmp_path / "baseline" / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["n_rows"] == len(b.owners_)
    assert meta["identity"] == traffic.identity.to_dict()


def test_load_refuses_another_identity(tmp_path: Path) -> None:
    X = _unit(np.random.default_rng(5), 100, 16)
    OrganicBaseline().fit(X, np.arange(100, dtype=np.int64) % 4, RANDOM_ID).save(tmp_path / "b")
    other = replace(RANDOM_ID, profile="minilm", fingerprint="f" * 32)
    with pytest.raises(BaselineIdentityError) as err:
        OrganicBaseline.load(tmp_path / "b", expected_identity=other)
    msg = str(err.value)
    assert "'static'" in msg and "'minilm'" in msg and "0" * 32 in msg and "f" * 32 in msg
    assert isinstance(err.value, ValueError)
    assert OrganicBaseline.load(tmp_path / "b").identity_ == RANDOM_ID  # no expectation: accepted


def test_load_refuses_missing_corrupt_or_unknown_artifacts(tmp_path: Path) -> None:
    with pytest.raises(BaselineArtifactError, match=str(tmp_path / "nowhere")):
        OrganicBaseline.load(tmp_path / "nowhere")
    X = _unit(np.random.default_rng(6), 100, 16)
    b = OrganicBaseline().fit(X, np.arange(100, dtype=np.int64) % 4, RANDOM_ID)

    b.save(tmp_path / "truncated")
    index = tmp_path / "truncated" / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])
    with pytest.raises(BaselineArtifactError, match="index.faiss"):
        OrganicBaseline.load(tmp_path / "truncated")

    b.save(tmp_path / "future")
    meta_path = tmp_path / "future" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BaselineArtifactError, match="format version 99"):
        OrganicBaseline.load(tmp_path / "future")

    b.save(tmp_path / "garbled")
    (tmp_path / "garbled" / "meta.json").write_text("{not json")
    with pytest.raises(BaselineArtifactError, match="meta.json"):
        OrganicBaseline.load(tmp_path / "garbled")


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    first = OrganicBaseline().fit(_unit(rng, 100, 16), np.arange(100, dtype=np.int64) % 4, RANDOM_ID)
    second = OrganicBaseline().fit(_unit(rng, 120, 16), np.arange(120, dtype=np.int64) % 4, RANDOM_ID)
    first.save(tmp_path / "b")

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        second.save(tmp_path / "b")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary left behind
    assert OrganicBaseline.load(tmp_path / "b").index_.ntotal == 100  # the old artifact intact

    second.save(tmp_path / "b")
    assert OrganicBaseline.load(tmp_path / "b").index_.ntotal == 120
    assert [p.name for p in tmp_path.iterdir()] == ["b"]

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError):
        first.save(tmp_path / "other")


def test_drift_report_tells_the_same_traffic_from_a_moved_one(traffic: Traffic) -> None:
    from distillguard.features.drift import drift_report

    half = len(traffic.X) // 2
    b = OrganicBaseline(exact_max=50_000, n_clusters=8, seed=3).fit(
        traffic.X[:half], traffic.codes[:half], traffic.identity)
    _, same = drift_report(b, traffic.X[half:])
    # a later period whose organic users ask what only harvesters asked here
    table, moved = drift_report(b, np.concatenate(traffic.harvest))
    assert moved["cluster_js_divergence_bits"] > 2 * same["cluster_js_divergence_bits"]
    assert moved["knn_distance_ratio"] > same["knn_distance_ratio"]
    assert moved["share_beyond_reference_p90"] > same["share_beyond_reference_p90"]
    assert same["share_beyond_reference_p90"] < 0.3
    assert len(table) == 8 and table["now_share"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no organic prompts"):
        drift_report(b, traffic.X[:0])
