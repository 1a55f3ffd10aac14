"""The analyst pages themselves: a workbench snapshot in, HTML out. Runs in the page process that
`serving/ui.py` starts, never in the process that answers the gateway.

Pages render only what `distillguard.workbench` hands over (its view dataclasses); prompt text
arrives as `PromptText`, already redacted when redaction is on, and the wrapper skeletons (cut from
prompts, handed over as plain strings) are redacted here the same way. The snapshot is opened on the
first page and reopened when its generation changes on disk (`distillguard workbench build`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup

from distillguard.serving import ui_charts as charts

log = logging.getLogger("distillguard.serving.ui")

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
SEARCH_K = 10
GRAPH_NODES = 150
MEMBERS_SHOWN = 200  # rows of a campaign's members table
DETAIL_CLUSTERS = 8  # clusters of an account shown with their neighbour tables
DECISIONS = ("review", "block", "allow")


@dataclass(frozen=True)
class UiConfig:
    """What the page process needs of the settings (no API keys)."""

    workbench_dir: str
    state_path: str
    store: str
    redact: bool
    auth: bool
    redact_logs: bool = False  # logged exceptions without their messages (log_privacy.py)


class NoSnapshot(Exception):
    pass


class WorkbenchHolder:
    """Opens the snapshot lazily, checks its generation at most once a second and reopens it when
    a rebuild changed it. A failed reopen keeps serving the snapshot already open."""

    def __init__(self, folder: Path, *, redact: bool, store_dir: Path | None) -> None:
        self.folder, self.redact, self.store_dir = folder, redact, store_dir
        self._lock = threading.Lock()
        self._wb: Any = None
        self._gen: str | None = None
        self._checked = 0.0
        self._error: str | None = None

    def get(self):
        with self._lock:
            now = time.monotonic()
            if now - self._checked < 1.0:
                if self._wb is not None:
                    return self._wb
                raise NoSnapshot(self._error or "no snapshot")
            self._checked = now
            if self._wb is not None:
                try:
                    if self._wb.generation() == self._gen:
                        return self._wb
                except Exception:  # a rebuild in progress: try to reopen below
                    log.warning("reading the workbench generation failed", exc_info=True)
            try:
                from distillguard.workbench.queries import Workbench

                wb = Workbench.open(self.folder, redact=self.redact, store_dir=self.store_dir)
                gen = wb.generation()
            except Exception as exc:
                self._error = f"{type(exc).__name__}: {exc}"
                if self._wb is not None:
                    log.warning("reopening the workbench snapshot failed; serving the open one: %s", self._error)
                    return self._wb
                raise NoSnapshot(self._error) from None
            if self._wb is not None:
                log.info("workbench snapshot changed (%s -> %s): reopened", self._gen, gen)
            self._wb, self._gen, self._error = wb, gen, None
            return wb


# -- formatting -------------------------------------------------------------------------------------

def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v * 100:.{digits}f}%"


def _short_ts(ts: str | None) -> str:
    return "–" if not ts else ts.replace("T", " ")[:16]


def _source(source: object) -> str:
    """meta.json's source: {"state": folder} or {"events": file, ...}."""
    if isinstance(source, dict):
        for key in ("state", "events"):
            if source.get(key):
                return f"{key} {source[key]}"
        return ", ".join(f"{k} {v}" for k, v in source.items())
    return str(source)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = _pct
    env.filters["ts"] = _short_ts
    # small calibrated scores still matter next to low thresholds: never show them as 0.000
    env.filters["score"] = lambda v: "–" if v is None else (f"{v:.3f}" if v >= 0.001 or v == 0 else f"{v:.1e}")
    env.filters["source"] = _source
    env.filters["q"] = lambda v: quote(str(v), safe="")  # one path segment or query value
    env.filters["epoch"] = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return env


def _map_svg(view) -> Markup:
    return Markup(charts.map_svg([(p.x, p.y, p.kind) for p in view.points],
                                 explained=tuple(view.explained_variance)))


def _share_rows(clusters, limit: int = 24) -> list[charts.ShareRow]:
    return [charts.ShareRow(f"cluster {c.cluster}", c.account_share, c.organic_share, f"/ui/clusters/{c.cluster}")
            for c in clusters[:limit]]


# -- the pages ------------------------------------------------------------------------------------------

class Renderer:
    """page(route, params) -> (status, html, milliseconds). Each route method takes the open
    workbench and the request's (already validated) parameters and returns (template, context);
    a KeyError from the workbench is a 404 page, a missing snapshot the page that says how to build one."""

    def __init__(self, cfg: UiConfig) -> None:
        self.cfg = cfg
        self.holder = WorkbenchHolder(Path(cfg.workbench_dir), redact=cfg.redact, store_dir=Path(cfg.store))
        self.env = environment()
        self.graphs: dict[tuple, charts.GraphDrawing] = {}  # drawn campaign graphs, newest last
        self._lock = threading.Lock()

    def html(self, template: str, **ctx) -> str:
        return self.env.get_template(template).render(redact=self.cfg.redact, auth=self.cfg.auth,
                                                      skeleton=self.skeleton, **ctx)

    def skeleton(self, text: str | None) -> str:
        """Wrapper skeletons are cut from user prompts: redacted like them when redaction is on."""
        if text is None:
            return "–"
        if not self.cfg.redact or text.startswith("[redacted skeleton "):  # the snapshot redacted it already
            return text
        return f"[redacted {hashlib.sha256(text.encode()).hexdigest()[:12]} · {len(text)} chars]"

    def warm(self) -> None:
        """Open the snapshot and load the search embedder ahead of the first pages (seconds each)."""
        try:
            self.holder.get().warm()
        except NoSnapshot:
            pass
        except Exception:
            log.warning("warming the workbench failed; pages will retry", exc_info=True)

    def page(self, route: str, params: dict) -> tuple[int, str, float]:
        t0 = time.perf_counter()
        with self._lock:
            status, body = self._page(route, params)
        return status, body, (time.perf_counter() - t0) * 1000

    def _page(self, route: str, params: dict) -> tuple[int, str]:
        try:
            wb = self.holder.get()
        except NoSnapshot as exc:
            return 503, self.html("no_snapshot.html", error=str(exc), folder=self.cfg.workbench_dir,
                                  state=self.cfg.state_path, info=None, page="")
        try:
            template, ctx = getattr(self, f"route_{route}")(wb, **params)
        except KeyError as exc:
            return 404, self.html("not_found.html", what=str(exc.args[0]) if exc.args else "", info=wb.info, page="")
        return 200, self.html(template, info=wb.info, **ctx)

    # -- ranked accounts ----------------------------------------------------------------------------------
    def route_ranked(self, wb, *, decision: str | None, component: int | None, model_version: str | None,
                     page: int) -> tuple[str, dict]:
        rows, total = wb.ranked(decision=decision, component=component, model_version=model_version,
                                limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        facets = wb.facets()
        campaigns = [c for c in facets.get("components", []) if c[1] > 1][:200]
        filters = {k: v for k, v in (("decision", decision), ("component", component),
                                     ("model_version", model_version)) if v is not None}
        pages_n = max(1, -(-total // PAGE_SIZE))

        def page_url(n: int) -> str:
            return "/ui/?" + urlencode({**filters, "page": n})
        return "ranked.html", {
            "page": "ranked", "rows": rows, "total": total, "facets": facets, "campaigns": campaigns,
            "filters": filters, "decision": decision, "component": component, "model_version": model_version,
            "page_no": page, "pages_n": pages_n, "offset": (page - 1) * PAGE_SIZE,
            "prev_url": page_url(page - 1) if page > 1 else None,
            "next_url": page_url(page + 1) if page < pages_n else None}

    # -- one account -------------------------------------------------------------------------------------
    def _verdicts(self, accounts: list[str], judge: dict | None) -> dict:
        """The analyst verdicts of `accounts` and what the verdict forms need (`verdict_routes.Roles`)."""
        from distillguard.serving.verdicts import verdict_views

        return {"judge": judge or {"analyst": None, "csrf": ""},
                **verdict_views(Path(self.cfg.state_path), accounts)}

    def route_account(self, wb, *, account_id: str, judge: dict | None = None) -> tuple[str, dict]:
        view = wb.account(account_id)
        volume = charts.volume_svg([(h.hour, h.prompts) for h in view.hourly],
                                   [(s.ts, s.model) for s in view.model_switches])
        return "account.html", {
            "page": "account", "v": view, "a": view.account, "volume_svg": Markup(volume),
            "shares_svg": Markup(charts.share_bars_svg(_share_rows(view.clusters))),
            "detail": view.clusters[:DETAIL_CLUSTERS], "more_clusters": max(0, len(view.clusters) - DETAIL_CLUSTERS),
            "map_svg": _map_svg(wb.map(account_id=account_id)), **self._verdicts([account_id], judge)}

    # -- campaigns -----------------------------------------------------------------------------------------
    def route_campaigns(self, wb, *, min_size: int) -> tuple[str, dict]:
        return "campaigns.html", {"page": "campaigns", "campaigns": wb.campaigns(min_size=max(2, min_size), limit=200)}

    def route_campaign(self, wb, *, component: int, selected: str | None,
                       judge: dict | None = None) -> tuple[str, dict]:
        c = wb.campaign(component)
        key = (wb.info.get("generation"), component, selected)
        graph = self.graphs.get(key)
        if graph is None:  # the layout is the page's priciest part (~0.3 s for a campaign of 500)
            nodes = [charts.GraphNode(m.account_id, m.score, m.decision, f"/ui/accounts/{quote(m.account_id, safe='')}")
                     for m in c.members]
            graph = charts.graph_svg(nodes, [(e.a, e.b, e.weight) for e in c.edges], max_nodes=GRAPH_NODES,
                                     highlight=selected)
            self.graphs[key] = graph
            while len(self.graphs) > 64:
                self.graphs.pop(next(iter(self.graphs)), None)
        return "campaign.html", {"page": "campaigns", "c": c, "graph": graph, "graph_svg": Markup(graph.svg),
                                 "graph_nodes": GRAPH_NODES, "members": c.members[:MEMBERS_SHOWN],
                                 "map_svg": _map_svg(wb.map(component=component)),
                                 **self._verdicts([m.account_id for m in c.members], judge)}

    # -- one organic cluster ---------------------------------------------------------------------------------
    def route_cluster(self, wb, *, cluster: int) -> tuple[str, dict]:
        return "cluster.html", {"page": "clusters", "cl": wb.cluster(cluster)}

    # -- search ------------------------------------------------------------------------------------------------
    def route_search(self, wb, *, q: str) -> tuple[str, dict]:
        return "search.html", {"page": "search", "q": q, "hits": wb.search(q, k=SEARCH_K) if q else None}

    # -- the map -----------------------------------------------------------------------------------------------
    def route_map(self, wb, *, account: str | None, component: int | None) -> tuple[str, dict]:
        view = wb.map(account_id=account, component=component)
        return "map.html", {"page": "map", "account": account, "component": component, "map_svg": _map_svg(view),
                            "highlighted": sum(p.kind != "organic" for p in view.points)}


# -- the page process: `python -m distillguard.serving.ui_pages PARENT_PID` -------------------------------
# One JSON request a line on stdin ({"route", "params"}), one JSON answer a line on the original stdout
# ({"status", "body", "ms"}); everything else the process prints goes to stderr. It exits when stdin
# closes, which is when the server that started it exits, however it exits.

CONFIG_ENV = "DISTILLGUARD_UI_CONFIG"


def _follow_parent(parent: int) -> None:
    """Exit when the server is gone even while a page is still rendering."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main() -> None:
    import json
    import sys

    parent = int(sys.argv[1])
    cfg = UiConfig(**json.loads(os.environ[CONFIG_ENV]))
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if cfg.redact_logs:
        from distillguard.serving.log_privacy import withhold_exception_messages

        withhold_exception_messages()
    try:
        os.nice(5)  # the gateway's answers come first
    except OSError:
        pass
    threading.Thread(target=_follow_parent, args=(parent,), daemon=True, name="follow-parent").start()
    renderer = Renderer(cfg)
    threading.Thread(target=renderer.warm, daemon=True, name="warm").start()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            status, body, ms = renderer.page(request["route"], request["params"])
        except Exception:
            log.exception("rendering /ui %s %s failed", request.get("route"), request.get("params"))
            status, body, ms = 500, renderer.html("error.html", info=None, page=""), 0.0
        answers.write(json.dumps({"status": status, "body": body, "ms": round(ms, 1)}).encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    main()
