"""Reading a workbench snapshot: the ranked list, an account's clusters and neighbours, campaigns,
clusters, prompt search and the embedding map. Every prompt leaves here as a `PromptText`,
redacted when the workbench was opened with `redact=True`.

Safe to share between threads (each thread gets its own read-only SQLite connection; FAISS
searches are read-only).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from distillguard.features.pipeline import EmbeddingContext, FeatureState
from distillguard.workbench.snapshot import SNAPSHOT_FORMAT
from distillguard.workbench.views import (
    AccountNeighbour, AccountRow, AccountView, CampaignView, ClusterMember, ClusterPage, ClusterView, GraphEdge,
    HourCount, MapPoint, MapView, ModelSwitch, OrganicNeighbour, PromptText, SearchHit, SharedValue,
)

EXAMPLES_PER_CLUSTER = 3
NEIGHBOURS = 5
MEMBERS_IN_LIST = 10  # members shown per campaign in `campaigns()`
MEMBERS_MAX = 500  # members shown on a campaign page
MEMBERS_ON_ACCOUNT = 100  # other members of its campaign group listed with an account
MAP_HIGHLIGHT_MAX = 2_000
_ACCOUNT_COLUMNS = ("account_id, score, decision, model_version, component, component_size, prompts, "
                    "first_ts_us, last_ts_us, reasons")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class WorkbenchError(ValueError):
    """No readable snapshot where one was expected, or one made by another embedder."""


def _iso(ts_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=int(ts_us))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(r: tuple) -> AccountRow:
    return AccountRow(r[0], float(r[1]), r[2], r[3], int(r[4]), int(r[5]), int(r[6]), _iso(r[7]), _iso(r[8]),
                      json.loads(r[9]))


class Workbench:
    def __init__(self, folder: Path, meta: dict, state: FeatureState, index: faiss.Index, vectors: np.ndarray,
                 *, redact: bool, store_dir: Path | None) -> None:
        self.folder = folder
        self.info = meta
        self.state = state
        self.index = index
        self.vectors = vectors  # (distinct texts, d) float16, memory-mapped
        self.redact = redact
        self.store_dir = store_dir
        self._local = threading.local()
        self._ctx: EmbeddingContext | None = None
        self._ctx_lock = threading.RLock()  # one embedding at a time (the store is one connection)

    @classmethod
    def open(cls, folder: Path, *, redact: bool = False, store_dir: Path | None = None) -> Workbench:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise WorkbenchError(f"{folder}: no workbench snapshot here (build one with `distillguard workbench "
                                 "build`)") from None
        if meta.get("format") != SNAPSHOT_FORMAT:
            raise WorkbenchError(f"{folder}: unknown snapshot format {meta.get('format')!r}")
        state = FeatureState.load(folder / "feature_state")
        index = faiss.read_index(str(folder / "texts.faiss"))
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        return cls(folder, meta, state, index, vectors, redact=redact, store_dir=store_dir)

    def generation(self) -> str:
        """The id of the snapshot now on disk (differs from `info['generation']` once rebuilt)."""
        try:
            return json.loads((self.folder / "meta.json").read_text())["generation"]
        except (OSError, json.JSONDecodeError, KeyError):
            return ""

    # -- plumbing ------------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.folder / 'workbench.sqlite'}?mode=ro", uri=True,
                                   check_same_thread=False)
            self._local.conn = conn
        return conn

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._db().execute(sql, args).fetchall()

    def show(self, text: str) -> PromptText:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        if self.redact:
            return PromptText(f"[redacted {digest} · {len(text)} chars]", digest, len(text), True)
        return PromptText(text, digest, len(text), False)

    def show_skeleton(self, skeleton: str | None) -> str | None:
        """A wrapper skeleton is cut from prompts: redacted like them."""
        if skeleton is None or not self.redact:
            return skeleton
        return f"[redacted skeleton {hashlib.sha256(skeleton.encode('utf-8')).hexdigest()[:12]}]"

    def _accounts(self, ids: list[str]) -> dict[str, AccountRow]:
        out: dict[str, AccountRow] = {}
        for lo in range(0, len(ids), 900):
            chunk = ids[lo:lo + 900]
            marks = ",".join("?" * len(chunk))
            for r in self._q(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id IN ({marks})", tuple(chunk)):
                out[r[0]] = _row(r)
        return out

    def _texts(self, text_ids: list[int]) -> dict[int, str]:
        if not text_ids:
            return {}
        marks = ",".join("?" * len(text_ids))
        return dict(self._q(f"SELECT text_id, text FROM texts WHERE text_id IN ({marks})", tuple(text_ids)))

    def _vectors(self, text_ids: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.vectors[np.asarray(text_ids, dtype=np.int64)], dtype=np.float32)

    def _owners(self, text_ids: list[int]) -> dict[int, list[str]]:
        owners: dict[int, list[str]] = {}
        if text_ids:
            marks = ",".join("?" * len(text_ids))
            for t, a in self._q(f"SELECT DISTINCT text_id, account_id FROM prompts WHERE text_id IN ({marks})",
                                tuple(text_ids)):
                owners.setdefault(int(t), []).append(a)
        return owners

    def _search_texts(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.index.ntotal)
        sims, idx = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.clip(1.0 - sims, 0.0, 2.0), idx

    def _organic(self, queries: np.ndarray, k: int, exclude: int | None) -> list[list[OrganicNeighbour]]:
        dist, idx = self.state.baseline.knn(queries, k=k, exclude_owner=exclude)
        texts = self.state.baseline.neighbour_texts(idx)
        return [[OrganicNeighbour(self.show(t), float(d)) for d, t in zip(drow, trow) if t is not None]
                for drow, trow in zip(dist, texts)]

    # -- ranked list ---------------------------------------------------------------------------------

    def ranked(self, *, decision: str | None = None, component: int | None = None, model_version: str | None = None,
               limit: int = 100, offset: int = 0) -> tuple[list[AccountRow], int]:
        """Accounts by score (highest first) matching the filters, and how many match in all."""
        where, args = [], []
        for col, val in (("decision", decision), ("component", component), ("model_version", model_version)):
            if val is not None and val != "":
                where.append(f"{col} = ?")
                args.append(val)
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        total = self._q(f"SELECT COUNT(*) FROM accounts {cond}", tuple(args))[0][0]
        rows = self._q(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts {cond} ORDER BY score DESC, account_id "
                       "LIMIT ? OFFSET ?", (*args, int(limit), int(offset)))
        return [_row(r) for r in rows], int(total)

    def facets(self) -> dict:
        decisions = dict(self._q("SELECT decision, COUNT(*) FROM accounts GROUP BY decision"))
        versions = [r[0] for r in self._q("SELECT DISTINCT model_version FROM accounts ORDER BY model_version")]
        comps = [(int(c), int(s), int(f)) for c, s, f in self._q(
            "SELECT component, size, flagged FROM components WHERE size > 1 ORDER BY flagged DESC, size DESC LIMIT 200")]
        return {"decisions": decisions, "model_versions": versions, "components": comps}

    # -- one account ----------------------------------------------------------------------------------

    def account(self, account_id: str) -> AccountView:
        """Everything the analyst sees for one account (KeyError if the snapshot lacks it)."""
        found = self._accounts([account_id])
        if account_id not in found:
            raise KeyError(account_id)
        row = found[account_id]
        p = pd.DataFrame(self._q(
            "SELECT p.ts_us, p.text_id, p.model, t.cluster, t.skeleton FROM prompts p JOIN texts t USING(text_id) "
            "WHERE p.account_id = ? ORDER BY p.ts_us", (account_id,)),
            columns=["ts_us", "text_id", "model", "cluster", "skeleton"])
        clusters = self._clusters(account_id, p)
        hours = pd.to_datetime(p["ts_us"], unit="us", utc=True).dt.floor("h")
        hourly = [HourCount(h.strftime("%Y-%m-%dT%H:00"), int(n)) for h, n in hours.value_counts().sort_index().items()]
        switches: list[ModelSwitch] = []
        if p["model"].notna().any():
            first = p.dropna(subset=["model"]).drop_duplicates("model")
            switches = [ModelSwitch(_iso(t), m) for t, m in zip(first["ts_us"], first["model"])]
        infra = [SharedValue(f, v, int(n)) for f, v, n in self._q(
            "SELECT i.field, i.value, c.accounts FROM infra i JOIN infra_counts c USING(field, value) "
            "WHERE i.account_id = ? ORDER BY c.accounts DESC, i.field, i.value", (account_id,))]
        members: list[AccountRow] = []
        if row.component_size > 1:
            members = [m for m in self.ranked(component=row.component, limit=MEMBERS_ON_ACCOUNT + 1)[0]
                       if m.account_id != account_id]
        return AccountView(row, clusters, hourly, switches, infra, members)

    def _clusters(self, account_id: str, p: pd.DataFrame) -> list[ClusterView]:
        n = len(p)
        dist = self.state.baseline.cluster_distribution_
        sizes = p.groupby("cluster").size().sort_index()
        order = sorted(sizes.index, key=lambda c: (-sizes[c], c))
        # each cluster's dominant wrapper skeleton and how many of its prompts use it
        sk = p.dropna(subset=["skeleton"]).groupby(["cluster", "skeleton"]).size().rename("n").reset_index()
        sk = sk.sort_values(["cluster", "n", "skeleton"], ascending=[True, False, True]).drop_duplicates("cluster")
        top_skeleton = dict(zip(sk["cluster"], sk["skeleton"]))
        top_uses = dict(zip(sk["cluster"], sk["n"]))
        # examples: texts carrying the dominant wrapper first (they show what links the cluster to
        # other accounts), then the most repeated
        t = p.assign(wrapped=p["skeleton"].notna() & (p["skeleton"] == p["cluster"].map(top_skeleton)))
        t = t.groupby(["cluster", "text_id"]).agg(wrapped=("wrapped", "max"), uses=("wrapped", "size")).reset_index()
        t = t.sort_values(["cluster", "wrapped", "uses", "text_id"], ascending=[True, False, False, True])
        t = t.groupby("cluster").head(EXAMPLES_PER_CLUSTER)
        examples = {c: [int(x) for x in g["text_id"]] for c, g in t.groupby("cluster")}
        flat = [x for c in order for x in examples[c]]
        if not flat:
            return []
        q = self._vectors(np.array(flat))
        organic = self._organic(q, NEIGHBOURS, self.state.baseline_accounts.get(account_id))
        d, idx = self._search_texts(q, NEIGHBOURS * 8)
        owners = self._owners(sorted({int(i) for i in idx.ravel() if i >= 0}))
        picks: list[list[tuple[float, int, str]]] = []
        pos = 0
        for c in order:
            rows = range(pos, pos + len(examples[c]))
            pos += len(examples[c])
            cand = sorted((float(dd), int(x), a) for r in rows for dd, x in zip(d[r], idx[r]) if x >= 0
                          for a in owners.get(int(x), ()) if a != account_id)
            picked, seen = [], set()
            for dd, x, a in cand:  # one row per other account, nearest first
                if a not in seen:
                    seen.add(a)
                    picked.append((dd, x, a))
                    if len(picked) == NEIGHBOURS:
                        break
            picks.append(picked)
        others = self._accounts(sorted({a for pk in picks for _, _, a in pk}))
        texts = self._texts(sorted(set(flat) | {x for pk in picks for _, x, _ in pk}))
        views: list[ClusterView] = []
        pos = 0
        for c, picked in zip(order, picks):
            rows = range(pos, pos + len(examples[c]))
            pos += len(examples[c])
            org = sorted({o.text.digest: o for r in rows for o in organic[r]}.values(), key=lambda o: o.distance)
            size = int(sizes[c])
            views.append(ClusterView(
                int(c), size, size / n, float(dist[int(c)]), self.show_skeleton(top_skeleton.get(c)),
                int(top_uses.get(c, 0)) / size, [self.show(texts[x]) for x in examples[c]], org[:NEIGHBOURS],
                [AccountNeighbour(self.show(texts[x]), dd, a, others[a].score, others[a].decision)
                 for dd, x, a in picked]))
        return views

    # -- campaigns -------------------------------------------------------------------------------------

    def _shared(self, component: int) -> list[SharedValue]:
        return [SharedValue(f, v, int(n)) for f, v, n in self._q(
            "SELECT i.field, i.value, COUNT(DISTINCT i.account_id) AS n FROM infra i JOIN accounts a USING(account_id) "
            "WHERE a.component = ? GROUP BY i.field, i.value HAVING n >= 2 ORDER BY n DESC, i.field, i.value LIMIT 100",
            (component,))]

    def _campaign(self, r: tuple, *, detail: bool, members_max: int = MEMBERS_MAX) -> CampaignView:
        component, size, mean_s, max_s, flagged, skeleton, sk_accounts = r
        members, _ = self.ranked(component=component, limit=members_max)
        edges: list[GraphEdge] = []
        prompts: list[PromptText] = []
        if detail:
            ids = {m.account_id for m in members}
            marks = ",".join("?" * len(ids))
            edges = [GraphEdge(a, b, int(w)) for a, b, w in self._q(
                f"SELECT a, b, weight FROM edges WHERE a IN ({marks}) AND b IN ({marks})", (*ids, *ids))]
            first = "t.skeleton = ? DESC," if skeleton else ""
            args = (component, skeleton) if skeleton else (component,)
            prompts = [self.show(t) for (t,) in self._q(
                "SELECT t.text FROM texts t WHERE t.text_id IN (SELECT p.text_id FROM prompts p JOIN accounts a "
                "USING(account_id) WHERE a.component = ? LIMIT 2000) "
                f"ORDER BY {first} t.accounts DESC, t.text_id LIMIT 12", args)]
        return CampaignView(int(component), int(size), float(mean_s), float(max_s), int(flagged),
                            self.show_skeleton(skeleton),
                            int(sk_accounts), members, edges, self._shared(int(component)), prompts)

    def campaigns(self, *, min_size: int = 2, limit: int = 100, members: int = MEMBERS_IN_LIST) -> list[CampaignView]:
        """Coordination components of at least `min_size` accounts, most flagged members first.
        Each lists its `members` highest-scored members, without edges or prompts (`campaign` gives
        the full page)."""
        rows = self._q("SELECT component, size, mean_score, max_score, flagged, skeleton, skeleton_accounts "
                       "FROM components WHERE size >= ? ORDER BY flagged DESC, size DESC, component LIMIT ?",
                       (max(2, int(min_size)), int(limit)))
        return [self._campaign(r, detail=False, members_max=members) for r in rows]

    def campaign(self, component: int) -> CampaignView:
        rows = self._q("SELECT component, size, mean_score, max_score, flagged, skeleton, skeleton_accounts "
                       "FROM components WHERE component = ?", (int(component),))
        if not rows:
            raise KeyError(component)
        return self._campaign(rows[0], detail=True)

    # -- clusters ---------------------------------------------------------------------------------------

    def cluster(self, cluster: int) -> ClusterPage:
        k = len(self.state.baseline.cluster_distribution_)
        if not 0 <= int(cluster) < k:
            raise KeyError(cluster)
        c = int(cluster)
        counts = self._q("SELECT account_id, prompts FROM cluster_accounts WHERE cluster = ?", (c,))
        total = sum(n for _, n in counts)
        rows = self._accounts([a for a, _ in counts])
        members = sorted((ClusterMember(rows[a], int(n)) for a, n in counts),
                         key=lambda m: (m.account.decision == "allow", -m.prompts, -m.account.score))[:200]
        flagged = [m.account.account_id for m in members if m.account.decision != "allow"][:50]
        examples: list[PromptText] = []
        if flagged:
            marks = ",".join("?" * len(flagged))
            examples = [self.show(t) for (t,) in self._q(
                f"SELECT DISTINCT t.text FROM prompts p JOIN texts t USING(text_id) WHERE t.cluster = ? "
                f"AND p.account_id IN ({marks}) LIMIT 10", (c, *flagged))]
        if len(examples) < 10:
            examples += [self.show(t) for (t,) in self._q(
                "SELECT text FROM texts WHERE cluster = ? ORDER BY accounts DESC LIMIT ?", (c, 10 - len(examples)))]
        centroid = self.state.baseline.centroids_[c:c + 1].astype(np.float32)
        organic = self._organic(centroid, 8, None)[0]
        return ClusterPage(c, float(self.state.baseline.cluster_distribution_[c]), int(total),
                           [o.text for o in organic], examples, members)

    # -- search and map ---------------------------------------------------------------------------------

    def _context(self) -> EmbeddingContext:
        with self._ctx_lock:
            if self._ctx is None:
                store = self.store_dir or self.folder / "embeddings"
                ctx = EmbeddingContext.open(self.state.profile, Path(store))
                if ctx.embedder.identity != self.state.identity:
                    raise WorkbenchError(f"this machine's {self.state.profile} embedder "
                                         f"({ctx.embedder.identity.fingerprint}) differs from the snapshot's "
                                         f"({self.state.identity.fingerprint})")
                self._ctx = ctx
            return self._ctx

    def warm(self) -> None:
        """Load the embedder `search` needs now rather than on the first search."""
        self._context()

    def search(self, text: str, *, k: int = 10) -> list[SearchHit]:
        """The prompts nearest `text` among scored accounts' prompts and organic traffic, nearest first."""
        if not text.strip():
            return []
        with self._ctx_lock:
            q = self._context().embed([text]).astype(np.float32)
        if not np.linalg.norm(q) > 0:
            return []
        d, idx = self._search_texts(q, k)
        ids = [int(i) for i in idx[0] if i >= 0]
        owners = self._owners(ids)
        texts = self._texts(ids)
        rows = self._accounts(sorted({a for os in owners.values() for a in os}))
        hits = [SearchHit(self.show(texts[int(t)]), float(dd), "account",
                          sorted((rows[a] for a in owners.get(int(t), ())), key=lambda r: -r.score))
                for dd, t in zip(d[0], idx[0]) if t >= 0]
        hits += [SearchHit(o.text, o.distance, "organic", []) for o in self._organic(q, max(1, k // 2), None)[0]]
        return sorted(hits, key=lambda h: h.distance)

    def map(self, *, account_id: str | None = None, component: int | None = None) -> MapView:
        """Organic background points and the account's (or campaign's) distinct prompts on the same
        2-D PCA plane (fitted on organic traffic)."""
        pts = [MapPoint(float(x), float(y), "organic") for x, y in self._q("SELECT x, y FROM organic_points")]
        if account_id is not None:
            rows = self._q("SELECT x, y FROM texts WHERE text_id IN (SELECT DISTINCT text_id FROM prompts "
                           "WHERE account_id = ?) LIMIT ?", (account_id, MAP_HIGHLIGHT_MAX))
            pts += [MapPoint(float(x), float(y), "account") for x, y in rows]
        if component is not None:
            rows = self._q("SELECT x, y FROM texts WHERE text_id IN (SELECT DISTINCT p.text_id FROM prompts p "
                           "JOIN accounts a USING(account_id) WHERE a.component = ?) LIMIT ?",
                           (int(component), MAP_HIGHLIGHT_MAX))
            pts += [MapPoint(float(x), float(y), "campaign") for x, y in rows]
        ev = self.info.get("map_explained_variance", [0.0, 0.0])
        return MapView(pts, (float(ev[0]), float(ev[1])))


