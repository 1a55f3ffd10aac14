"""The organic baseline: what ordinary traffic looks like in embedding space, fitted once, saved as one artifact.

`OrganicBaseline` follows the scikit-learn estimator contract: `__init__` stores keyword-only
hyper-parameters, `fit` learns trailing-underscore attributes from organic prompt vectors and returns
self (no I/O), and every other method refuses an unfitted object with `BaselineNotFittedError`.

What `fit` learns, from (n, d) L2-normalised organic prompt vectors and each row's owner account:

- rows per account capped at `max_prompts_per_account` (seeded), so power users don't dominate;
- `index_`: a FAISS inner-product index over the kept rows, exact (`IndexFlatIP`) up to `exact_max`
  rows, else `IndexIVFFlat` whose recall@10 against exact search is measured and recorded;
- topic clusters (spherical k-means) and the organic cluster distribution, smoothed (no zeros);
- a sample of organic vectors and a random-Fourier-feature map of an RBF kernel, so a caller gets a
  linear-time MMD as ``||rff_features(X_account).mean(0) - organic_rff_mean_||``;
- quantiles of organic-to-organic kNN distances (neighbours from *other* accounts), for analysts.

`save` writes one directory (meta.json, index.faiss, arrays.npz, texts.parquet) via a temporary
directory and a rename; `load` refuses another embedder's identity, unknown format versions and
missing or corrupt files with errors that name the path.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from distillguard.features.embedding import EmbedderIdentity

FORMAT_VERSION = 1
_META, _INDEX, _ARRAYS, _TEXTS = "meta.json", "index.faiss", "arrays.npz", "texts.parquet"
#: Quantiles stored in `reference_knn_distance_`.
REFERENCE_QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
# Query rows used to measure index recall and the reference kNN statistics: enough for ~±1% on a
# recall estimate, small enough that the exact search behind it stays around a second at 100k rows.
_MEASURE_QUERIES = 1000
_REFERENCE_K = 10
# Laplace pseudo-count per cluster: a topic unseen in organic traffic stays improbable, not impossible,
# so divergences computed against the distribution stay finite.
_CLUSTER_PSEUDOCOUNT = 1.0
# k-means gets ~20 rows per centroid at least; fewer gives centroids that are single prompts.
_ROWS_PER_CLUSTER = 20
# Below ~39 training rows per inverted list FAISS warns and the lists are poorly placed.
_IVF_MIN_ROWS_PER_LIST = 39
_UNIT_NORM_TOL = 1e-3


class BaselineNotFittedError(ValueError, AttributeError):
    """A method that needs a fitted baseline was called before `fit` (same bases as sklearn's
    NotFittedError, which is not imported because sklearn costs ~1.5 s to import)."""


class BaselineIdentityError(ValueError):
    """The artifact was built with a different embedder than the one the caller expects."""


class BaselineArtifactError(RuntimeError):
    """A baseline artifact is missing, incomplete, corrupt or of an unknown format version."""


@dataclass(frozen=True)
class RandomFourierFeatures:
    """z(x) = sqrt(2/D) cos(x W + b), W ~ N(0, 1/bandwidth^2), b ~ U(0, 2π): z(x)·z(y) approximates
    the RBF kernel exp(-||x - y||² / (2 bandwidth²)) (Rahimi & Recht 2007)."""

    bandwidth: float
    weights: np.ndarray  # (d, D) float32
    offsets: np.ndarray  # (D,) float32

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, D) float32 features of the rows of X (n, d)."""
        proj = X @ self.weights
        proj += self.offsets
        np.cos(proj, out=proj)
        proj *= np.float32(math.sqrt(2.0 / self.weights.shape[1]))
        return proj


class OrganicBaseline:
    """Organic prompt vectors indexed for neighbour search, plus topic and kernel summaries of them."""

    def __init__(self, *, n_clusters: int = 64, exact_max: int = 50_000, max_prompts_per_account: int = 64,
                 sample_size: int = 2048, nprobe: int = 16, rff_dim: int = 256, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.exact_max = exact_max
        self.max_prompts_per_account = max_prompts_per_account
        self.sample_size = sample_size
        self.nprobe = nprobe
        self.rff_dim = rff_dim
        self.seed = seed

    def get_params(self) -> dict[str, int]:
        """The hyper-parameters, as passed to `__init__`."""
        return {name: getattr(self, name) for name in
                ("n_clusters", "exact_max", "max_prompts_per_account", "sample_size", "nprobe", "rff_dim", "seed")}

    def __repr__(self) -> str:
        return f"OrganicBaseline({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- fit ---------------------------------------------------------------------------------------

    def fit(self, embeddings: np.ndarray, account_codes: np.ndarray, identity: EmbedderIdentity,
            texts: Sequence[str] | None = None) -> OrganicBaseline:
        """Learn the baseline from organic rows; returns self.

        `embeddings` (n, d) float32 with unit-norm rows (zero vectors, e.g. of empty prompts, must be
        dropped by the caller); `account_codes` (n,) integer owner of each row; `identity` the embedder
        that made the vectors (its dim must be d); `texts` (n,) the prompts, kept for analysts if given.
        Deterministic in `seed` (FAISS k-means and IVF training are seeded too).
        """
        X, codes = self._validate_fit_inputs(embeddings, account_codes, identity, texts)
        self._validate_params()
        rng = _rng(self.seed, "cap")
        kept = _cap_per_account(codes, self.max_prompts_per_account, rng)
        Xk = np.ascontiguousarray(X[kept])
        n, d = Xk.shape

        self.identity_ = identity
        self.n_input_rows_ = int(X.shape[0])
        self.kept_rows_ = kept
        self.owners_ = codes[kept]
        self.texts_ = None if texts is None else [texts[i] for i in kept]
        self._max_rows_per_owner = _max_rows_per_owner(self.owners_)

        self.index_, self.index_kind_ = _build_index(Xk, self.exact_max, self.nprobe, self.seed)
        queries = _rng(self.seed, "measure").choice(n, size=min(n, _MEASURE_QUERIES), replace=False)
        self.index_recall_at_10_ = (1.0 if self.index_kind_ == "flat"
                                    else _measure_recall(self.index_, Xk, np.sort(queries), k=10))

        k = max(1, min(self.n_clusters, n // _ROWS_PER_CLUSTER))
        self.centroids_ = _spherical_kmeans(Xk, k, self.seed)
        counts = np.bincount(self.assign_clusters(Xk), minlength=k).astype(np.float64)
        self.cluster_distribution_ = (counts + _CLUSTER_PSEUDOCOUNT) / (n + _CLUSTER_PSEUDOCOUNT * k)

        sample = np.sort(_rng(self.seed, "sample").choice(n, size=min(n, self.sample_size), replace=False))
        self.sample_ = Xk[sample].copy()
        self.rff_ = _make_rff(self.sample_, self.rff_dim, _rng(self.seed, "rff"))
        # The mean over every kept row rather than only the sample: it is cheap and a better estimate.
        self.organic_rff_mean_ = _mean_features(self.rff_, Xk)

        ref = np.sort(queries)
        dist, idx = self.knn(Xk[ref], k=_REFERENCE_K, exclude_owner=self.owners_[ref])
        self.reference_knn_distance_ = _reference_quantiles(dist, idx)
        return self

    # -- queries -----------------------------------------------------------------------------------

    def knn(self, queries: np.ndarray, k: int = 10,
            exclude_owner: np.ndarray | int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest organic rows of each query.

        Returns (distances (n, k) float32 as 1 - cosine, clipped to [0, 2], ascending; indices (n, k)
        int64 into the kept rows, i.e. into `owners_` / `texts_`). Where fewer than k neighbours are
        found the tail is distance 2.0 and index -1. `exclude_owner` (n,) or a scalar: rows owned by
        that account code never count as neighbours of that query (an organic account scored against a
        baseline holding its own prompts must not find itself); a code no row has excludes nothing.
        """
        self._check_fitted()
        Q = _as_matrix(queries, self.identity_.dim, "queries")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        nq = Q.shape[0]
        exclude = None
        if exclude_owner is not None:
            exclude = np.asarray(exclude_owner)
            if not np.issubdtype(exclude.dtype, np.integer):
                raise ValueError(f"exclude_owner must be integer account codes, got dtype {exclude.dtype}")
            try:
                exclude = np.broadcast_to(exclude.astype(np.int64), (nq,))
            except ValueError:
                raise ValueError(f"exclude_owner has shape {np.shape(exclude_owner)}; expected ({nq},) "
                                 "or a scalar") from None
        # An owner has at most `_max_rows_per_owner` rows (the per-account cap), so fetching that many
        # extra guarantees k survivors whenever the index holds them.
        fetch = k + (self._max_rows_per_owner if exclude is not None else 0)
        fetch = min(fetch, self.index_.ntotal)
        sims, idx = self.index_.search(Q, fetch)
        valid = idx >= 0
        if exclude is not None:
            valid &= self.owners_[np.where(valid, idx, 0)] != exclude[:, None]
        # Stable sort on "invalid" keeps the search order among survivors and moves the rest to the end.
        order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
        sims = np.take_along_axis(sims, order, axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        valid = np.take_along_axis(valid, order, axis=1)
        dist = np.where(valid, np.clip(1.0 - sims, 0.0, 2.0), 2.0).astype(np.float32)
        idx = np.where(valid, idx, -1).astype(np.int64)
        if fetch < k:  # the index holds fewer than k rows
            dist = np.pad(dist, ((0, 0), (0, k - fetch)), constant_values=2.0)
            idx = np.pad(idx, ((0, 0), (0, k - fetch)), constant_values=-1)
        return dist, idx

    def assign_clusters(self, X: np.ndarray) -> np.ndarray:
        """(n,) int64 index of each row's nearest centroid by inner product."""
        self._check_fitted("centroids_")
        X = _as_matrix(X, self.identity_.dim, "X")
        out = np.empty(X.shape[0], dtype=np.int64)
        step = 65_536  # bounds the (step, k) score matrix
        for s in range(0, X.shape[0], step):
            out[s:s + step] = np.argmax(X[s:s + step] @ self.centroids_.T, axis=1)
        return out

    def rff_features(self, X: np.ndarray) -> np.ndarray:
        """(n, rff_dim) float32 random Fourier features of X; ``||rff_features(X).mean(0) -
        organic_rff_mean_||`` approximates the RBF-kernel MMD between X and organic traffic."""
        self._check_fitted("rff_")
        return self.rff_.transform(_as_matrix(X, self.identity_.dim, "X"))

    def neighbour_texts(self, indices: np.ndarray | Sequence[int]) -> list[Any]:
        """Prompts of kept rows by index (as returned by `knn`): a list for 1-D `indices`, a list of
        lists for 2-D. None for index -1 and everywhere when the baseline was fitted without texts."""
        self._check_fitted()
        arr = np.asarray(indices, dtype=np.int64)
        if arr.ndim not in (1, 2):
            raise ValueError(f"indices must be 1-D or 2-D, got shape {arr.shape}")
        n = len(self.owners_)
        if arr.size and (arr.max() >= n or arr.min() < -1):
            raise IndexError(f"indices must lie in [-1, {n}); got range [{arr.min()}, {arr.max()}]")

        def look(i: int) -> str | None:
            return None if self.texts_ is None or i < 0 else self.texts_[i]

        if arr.ndim == 1:
            return [look(int(i)) for i in arr]
        return [[look(int(i)) for i in row] for row in arr]

    # -- persistence -------------------------------------------------------------------------------

    def save(self, path: Path | str) -> None:
        """Write the fitted baseline as one directory at `path`, replacing an earlier baseline there.

        Everything is written into a temporary sibling directory first and renamed into place, so a
        crash leaves either the old artifact or the new one, never a mixture. Refuses to replace a
        file or a non-empty directory that is not a baseline artifact.
        """
        self._check_fitted()
        path = Path(path)
        if path.exists() and not (path.is_dir() and ((path / _META).exists() or not any(path.iterdir()))):
            raise FileExistsError(f"{path} exists and is not a baseline artifact; refusing to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            faiss.write_index(self.index_, str(tmp / _INDEX))
            np.savez(tmp / _ARRAYS, centroids=self.centroids_, cluster_distribution=self.cluster_distribution_,
                     sample=self.sample_, owners=self.owners_, kept_rows=self.kept_rows_,
                     rff_weights=self.rff_.weights, rff_offsets=self.rff_.offsets,
                     organic_rff_mean=self.organic_rff_mean_)
            files = [_INDEX, _ARRAYS]
            if self.texts_ is not None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({"text": pa.array(self.texts_, type=pa.string())}), tmp / _TEXTS)
                files.append(_TEXTS)
            meta = {
                "format_version": FORMAT_VERSION,
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "identity": self.identity_.to_dict(),
                "hyper_parameters": self.get_params(),
                "index_kind": self.index_kind_,
                "index_recall_at_10": self.index_recall_at_10_,
                "n_rows": int(self.index_.ntotal),
                "n_input_rows": self.n_input_rows_,
                "n_accounts": int(len(np.unique(self.owners_))),
                "n_clusters": int(len(self.centroids_)),
                "rff_bandwidth": self.rff_.bandwidth,
                "reference_knn_distance": {str(q): v for q, v in self.reference_knn_distance_.items()},
                "faiss_version": faiss.__version__,
                "files": {name: _file_digest(tmp / name) for name in files},
            }
            (tmp / _META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            # A directory cannot be renamed over a non-empty one: move the old artifact aside first and
            # put it back if the final rename fails.
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.replace(path, old / "artifact")
            try:
                os.replace(tmp, path)
            except BaseException:
                if old is not None:
                    os.replace(old / "artifact", path)
                    shutil.rmtree(old, ignore_errors=True)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: Path | str, *, expected_identity: EmbedderIdentity | None = None) -> OrganicBaseline:
        """Read a baseline written by `save`.

        Raises BaselineIdentityError when `expected_identity` is given and differs from the stored one,
        and BaselineArtifactError (naming the path) when the artifact is missing, of an unknown format
        version, fails its checksums or cannot be parsed.
        """
        path = Path(path)
        meta_path = path / _META
        if not meta_path.is_file():
            raise BaselineArtifactError(f"no baseline artifact at {path} ({_META} not found)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            version = meta["format_version"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BaselineArtifactError(f"unreadable {meta_path}: {exc}") from exc
        if version != FORMAT_VERSION:
            raise BaselineArtifactError(f"baseline artifact {path} has format version {version!r}; this code "
                                        f"reads version {FORMAT_VERSION} only; refit the baseline")
        try:
            stored = EmbedderIdentity.from_dict(meta["identity"])
            params = meta["hyper_parameters"]
            files = meta["files"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BaselineArtifactError(f"corrupt {meta_path}: missing or bad field {exc}") from exc
        if expected_identity is not None and expected_identity != stored:
            raise BaselineIdentityError(
                f"baseline {path} was built with embedder profile {stored.profile!r} (dim {stored.dim}, "
                f"fingerprint {stored.fingerprint}) but the caller embeds with profile "
                f"{expected_identity.profile!r} (dim {expected_identity.dim}, fingerprint "
                f"{expected_identity.fingerprint}); its vectors are not comparable, refit the baseline")
        for name, digest in files.items():
            if not (path / name).is_file():
                raise BaselineArtifactError(f"baseline artifact {path} is incomplete: {name} is missing")
            if _file_digest(path / name) != digest:
                raise BaselineArtifactError(f"baseline artifact {path} is corrupt: {name} fails its checksum")
        try:
            index = faiss.read_index(str(path / _INDEX))
            with np.load(path / _ARRAYS, allow_pickle=False) as z:
                arrays = {key: z[key] for key in z.files}
            texts = None
            if _TEXTS in files:
                import pyarrow.parquet as pq

                texts = pq.read_table(path / _TEXTS).column("text").to_pylist()
            self = cls(**params)
            self.identity_ = stored
            self.index_ = index
            if hasattr(index, "nprobe"):
                index.nprobe = self.nprobe
            self.index_kind_ = str(meta["index_kind"])
            self.index_recall_at_10_ = float(meta["index_recall_at_10"])
            self.n_input_rows_ = int(meta["n_input_rows"])
            self.kept_rows_ = arrays["kept_rows"]
            self.owners_ = arrays["owners"]
            self.texts_ = texts
            self.centroids_ = arrays["centroids"]
            self.cluster_distribution_ = arrays["cluster_distribution"]
            self.sample_ = arrays["sample"]
            self.rff_ = RandomFourierFeatures(float(meta["rff_bandwidth"]), arrays["rff_weights"],
                                              arrays["rff_offsets"])
            self.organic_rff_mean_ = arrays["organic_rff_mean"]
            self.reference_knn_distance_ = {float(q): float(v) for q, v in meta["reference_knn_distance"].items()}
        except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
            raise BaselineArtifactError(f"corrupt baseline artifact {path}: {exc}") from exc
        n = index.ntotal
        if index.d != stored.dim or len(self.owners_) != n or (texts is not None and len(texts) != n):
            raise BaselineArtifactError(f"corrupt baseline artifact {path}: index holds {n} rows of dim "
                                        f"{index.d}, owners {len(self.owners_)}, identity dim {stored.dim}")
        self._max_rows_per_owner = _max_rows_per_owner(self.owners_)
        return self

    # -- checks ------------------------------------------------------------------------------------

    def _check_fitted(self, attr: str = "index_") -> None:
        if not hasattr(self, attr):
            raise BaselineNotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() or "
                                         f"{type(self).__name__}.load() first")

    def _validate_params(self) -> None:
        for name, value in self.get_params().items():
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int, got {value!r}")
            if value < (0 if name in ("exact_max", "seed") else 1):
                raise ValueError(f"{name} must be >= {0 if name in ('exact_max', 'seed') else 1}, got {value}")

    @staticmethod
    def _validate_fit_inputs(embeddings: np.ndarray, account_codes: np.ndarray, identity: EmbedderIdentity,
                             texts: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(identity, EmbedderIdentity):
            raise TypeError(f"identity must be an EmbedderIdentity, got {type(identity).__name__}")
        X = _as_matrix(embeddings, identity.dim, "embeddings")
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"need at least 2 organic rows to fit a baseline, got {n}")
        if not np.all(np.isfinite(X)):
            raise ValueError("embeddings contain NaN or infinite values")
        norms = np.linalg.norm(X, axis=1)
        bad = np.abs(norms - 1.0) > _UNIT_NORM_TOL
        if bad.any():
            raise ValueError(f"{int(bad.sum())} embedding rows are not unit-norm (first at row "
                             f"{int(np.argmax(bad))}, norm {norms[bad][0]:.4g}); L2-normalise them and drop "
                             "zero vectors (e.g. of empty prompts) before fitting")
        codes = np.asarray(account_codes)
        if codes.shape != (n,) or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"account_codes must be an integer array of shape ({n},), got "
                             f"{codes.dtype} {codes.shape}")
        if texts is not None and len(texts) != n:
            raise ValueError(f"texts has {len(texts)} entries for {n} embedding rows")
        return X, codes.astype(np.int64, copy=False)


# --- pure helpers ----------------------------------------------------------------------------------


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per fit step, so changing one step's draws never shifts another's."""
    return np.random.default_rng([seed, int.from_bytes(hashlib.blake2b(stream.encode(), digest_size=4).digest(),
                                                       "little")])


def _as_matrix(X: np.ndarray, dim: int, name: str) -> np.ndarray:
    """X as a C-contiguous float32 (n, dim) array (FAISS needs exactly that), or a clear ValueError."""
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}) to match the embedder, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _cap_per_account(codes: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices keeping a uniform random `cap` rows of every account with more."""
    perm = rng.permutation(len(codes))
    order = perm[np.argsort(codes[perm], kind="stable")]  # grouped by account, random within
    grouped = codes[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return np.sort(order[rank < cap])


def _max_rows_per_owner(owners: np.ndarray) -> int:
    return int(np.unique(owners, return_counts=True)[1].max()) if len(owners) else 0


def _build_index(X: np.ndarray, exact_max: int, nprobe: int, seed: int) -> tuple[faiss.Index, str]:
    """Exact inner-product index up to `exact_max` rows, else IVF-Flat with nlist ≈ 4√n (bounded so
    every list gets ~39 training rows), trained on a seeded sample of the rows."""
    n, d = X.shape
    if n <= exact_max:
        index = faiss.IndexFlatIP(d)
        index.add(X)
        return index, "flat"
    nlist = max(1, min(int(4 * math.sqrt(n)), n // _IVF_MIN_ROWS_PER_LIST))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    # 64 rows per list is past where more training data moves the centroids noticeably.
    n_train = min(n, 64 * nlist)
    train = X[np.sort(_rng(seed, "ivf-train").choice(n, size=n_train, replace=False))]
    index.cp.min_points_per_centroid = 1  # silence FAISS's warning; nlist is bounded above instead
    index.train(np.ascontiguousarray(train))
    index.add(X)
    index.nprobe = nprobe
    return index, f"ivf{nlist}"


def _measure_recall(index: faiss.Index, X: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Recall@k of `index` against exact search for rows `queries` of X, each query's own row excluded
    from both result lists. A returned neighbour counts as found when it is at least as similar as the
    exact k-th neighbour, so exact ties (duplicate prompts are common) are not scored as misses."""
    Q = X[queries]
    exact_s, exact_i = faiss.knn(Q, X, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    approx_s, approx_i = index.search(Q, k + 1)
    exact_s, exact_ok = _drop_self(exact_s, exact_i, queries, k)
    approx_s, approx_ok = _drop_self(approx_s, approx_i, queries, k)
    kth = np.where(exact_ok.any(axis=1), np.where(exact_ok, exact_s, np.inf).min(axis=1), -np.inf)
    found = (approx_ok & (approx_s >= kth[:, None] - 1e-5)).sum(axis=1)
    wanted = exact_ok.sum(axis=1)
    return float(np.minimum(found, wanted).sum() / max(1, wanted.sum()))


def _drop_self(sims: np.ndarray, idx: np.ndarray, self_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First k (similarity, valid) per row after removing the query's own row and -1 padding."""
    ok = (idx >= 0) & (idx != self_rows[:, None])
    order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(ok, order, axis=1)


def _spherical_kmeans(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k, d) unit-norm centroids of spherical k-means (20 iterations, seeded)."""
    km = faiss.Kmeans(X.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1)
    km.train(X)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _make_rff(sample: np.ndarray, dim: int, rng: np.random.Generator) -> RandomFourierFeatures:
    """RFF map whose RBF bandwidth is the median pairwise distance in (up to 1000 rows of) `sample`."""
    S = sample[: min(len(sample), 1000)].astype(np.float64)
    sq = np.clip(2.0 - 2.0 * (S @ S.T), 0.0, None)  # unit rows: ||x - y||² = 2 - 2 x·y
    iu = np.triu_indices(len(S), k=1)
    median = float(np.median(np.sqrt(sq[iu]))) if len(iu[0]) else 0.0
    bandwidth = median if median > 1e-6 else 1.0  # all-identical sample: any positive scale will do
    weights = rng.normal(0.0, 1.0 / bandwidth, size=(sample.shape[1], dim)).astype(np.float32)
    offsets = rng.uniform(0.0, 2.0 * math.pi, size=dim).astype(np.float32)
    return RandomFourierFeatures(bandwidth, weights, offsets)


def _mean_features(rff: RandomFourierFeatures, X: np.ndarray) -> np.ndarray:
    total = np.zeros(rff.weights.shape[1], dtype=np.float64)
    for s in range(0, len(X), 16_384):  # bounds the (chunk, D) feature matrix
        total += rff.transform(X[s:s + 16_384]).sum(axis=0, dtype=np.float64)
    return (total / len(X)).astype(np.float32)


def _reference_quantiles(dist: np.ndarray, idx: np.ndarray) -> dict[float, float]:
    """Quantiles of each query's mean distance to the neighbours it found (queries with none skipped)."""
    found = idx >= 0
    has = found.any(axis=1)
    if not has.any():
        return {q: float("nan") for q in REFERENCE_QUANTILES}
    means = np.where(found, dist, 0.0).sum(axis=1)[has] / found.sum(axis=1)[has]
    return {q: float(v) for q, v in zip(REFERENCE_QUANTILES, np.quantile(means, REFERENCE_QUANTILES))}


def _file_digest(path: Path) -> str:
    """blake2b-16 hex of a file's bytes: detects truncated or altered artifact files before FAISS reads them."""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
