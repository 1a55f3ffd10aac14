"""Inline SVG charts for the analyst pages: pure functions from plain data to an SVG string.

Every label and link that reaches the SVG is HTML-escaped here; colours come from classes styled by
`static/ui.css`, so the markup carries no inline style (the pages' CSP forbids it). Sizes are
viewBox units: the CSS scales each chart to the width of its container.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def _parse_ts(ts: str) -> datetime:
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _empty(width: int, height: int, message: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(message)}">'
            f'<text class="muted" x="{width / 2}" y="{height / 2}" text-anchor="middle">{_e(message)}</text></svg>')


# -- prompt volume over time ------------------------------------------------------------------------

def volume_svg(hours: Sequence[tuple[str, int]], switches: Sequence[tuple[str, str]] = (), *,
               width: int = 900, height: int = 210, max_hourly_span: int = 24 * 21) -> str:
    """Bars of prompts per hour (per day when the active span is longer than `max_hourly_span`
    hours), on a real time axis; the first model named in the caption, a dashed marker where the
    account switched to each later one.

    hours: (ISO hour, prompts) for active hours; switches: (ISO timestamp, model)."""
    if not hours:
        return _empty(width, height, "no prompts")
    parsed = sorted((_parse_ts(h), int(n)) for h, n in hours)
    daily = (parsed[-1][0] - parsed[0][0]) > timedelta(hours=max_hourly_span)
    step = timedelta(days=1) if daily else timedelta(hours=1)

    def floor(t: datetime) -> datetime:
        return t.replace(hour=0, minute=0, second=0, microsecond=0) if daily else t.replace(minute=0, second=0,
                                                                                              microsecond=0)
    buckets: dict[datetime, int] = {}
    for t, n in parsed:
        buckets[floor(t)] = buckets.get(floor(t), 0) + n
    start, end = min(buckets), max(buckets) + step
    slots = max(1, round((end - start) / step))
    left, right, top, bottom = 44, 10, 22, 28
    pw, ph = width - left - right, height - top - bottom
    peak = max(buckets.values())
    bw = pw / slots
    unit = "day" if daily else "hour"
    out = [f'<svg class="chart volume" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="prompts per {unit}">']
    out.append(f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>')
    out.append(f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{peak}</text>')
    out.append(f'<text class="tick" x="{left - 4}" y="{top + ph}" text-anchor="end">0</text>')
    first = f" · first model {switches[0][1]}" if switches else ""
    out.append(f'<text class="tick" x="{left}" y="{top - 8}">prompts per {_e(unit)}{_e(first)}</text>')
    for t, n in sorted(buckets.items()):
        i = (t - start) / step
        h = ph * n / peak
        x = left + i * bw
        label = t.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:00")
        out.append(f'<rect class="bar" x="{x:.2f}" y="{top + ph - h:.2f}" width="{max(bw - 0.6, 0.8):.2f}" '
                   f'height="{h:.2f}"><title>{_e(label)} UTC: {n} prompts</title></rect>')
    # day ticks, at most ~10 of them
    days = max(1, math.ceil((end - start) / timedelta(days=1)))
    every = max(1, math.ceil(days / 10))
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
    for d in range(0, days + 1, every):
        t = day0 + timedelta(days=d)
        if t < start or t > end:
            continue
        x = left + (t - start) / step * bw
        tick = (f'<text class="tick" x="{x:.2f}" y="{height - 10}" text-anchor="middle">{t:%m-%d}</text>'
                if x < width - right - 16 else "")
        out.append(f'<line class="grid" x1="{x:.2f}" y1="{top}" x2="{x:.2f}" y2="{top + ph}"/>{tick}')
    # the first model is where the timeline starts; mark each later one where the account switched
    for k, (ts, model) in enumerate(switches[1:]):
        t = _parse_ts(ts)
        x = left + min(max((t - start) / step, 0), slots) * bw
        anchor = "end" if x > width - 120 else "start"
        tx = x - 3 if anchor == "end" else x + 3
        out.append(f'<g class="switch"><line x1="{x:.2f}" y1="{top - 12}" x2="{x:.2f}" y2="{top + ph}"/>'
                   f'<text x="{tx:.2f}" y="{top - 4 if k % 2 == 0 else top + 10}" text-anchor="{anchor}">{_e(model)}</text>'
                   f'<title>switched to {_e(model)} at {_e(ts)}</title></g>')
    out.append("</svg>")
    return "".join(out)


# -- account share against organic share per cluster -----------------------------------------------

@dataclass(frozen=True)
class ShareRow:
    label: str
    account: float  # share in the inspected account (or campaign)
    organic: float  # share in organic traffic
    href: str | None = None


def share_bars_svg(rows: Sequence[ShareRow], *, width: int = 900, row_h: int = 20,
                   names: tuple[str, str] = ("this account", "organic")) -> str:
    """Paired horizontal bars per row: the account's share and organic traffic's share."""
    if not rows:
        return _empty(width, 60, "no clusters")
    left, right, top = 110, 84, 26
    height = top + row_h * len(rows) + 8
    pw = width - left - right
    peak = max(max(r.account, r.organic) for r in rows) or 1.0
    out = [f'<svg class="chart shares" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{_e(names[0])} against {_e(names[1])} by cluster">',
           f'<rect class="bar-account" x="{left}" y="6" width="10" height="10"/>'
           f'<text class="tick" x="{left + 14}" y="15">{_e(names[0])}</text>'
           f'<rect class="bar-organic" x="{left + 140}" y="6" width="10" height="10"/>'
           f'<text class="tick" x="{left + 154}" y="15">{_e(names[1])}</text>']
    for i, r in enumerate(rows):
        y = top + i * row_h
        label = f'<text class="tick" x="{left - 6}" y="{y + row_h * 0.6:.1f}" text-anchor="end">{_e(r.label)}</text>'
        if r.href:
            label = f'<a href="{_e(r.href)}">{label}</a>'
        wa, wo = pw * r.account / peak, pw * r.organic / peak
        half = (row_h - 4) / 2
        out.append(label)
        out.append(f'<rect class="bar-account" x="{left}" y="{y + 1}" width="{wa:.2f}" height="{half:.1f}">'
                   f'<title>{_e(r.label)}: {_e(names[0])} {r.account:.1%}</title></rect>')
        out.append(f'<rect class="bar-organic" x="{left}" y="{y + 1 + half:.1f}" width="{wo:.2f}" height="{half:.1f}">'
                   f'<title>{_e(r.label)}: {_e(names[1])} {r.organic:.1%}</title></rect>')
        out.append(f'<text class="tick" x="{left + max(wa, wo) + 4:.2f}" y="{y + row_h * 0.6:.1f}">'
                   f'{r.account:.0%} / {r.organic:.1%}</text>')
    out.append("</svg>")
    return "".join(out)


# -- the hydra view: accounts of a campaign and their links -----------------------------------------

@dataclass(frozen=True)
class GraphNode:
    id: str
    score: float
    decision: str
    href: str | None = None


@dataclass(frozen=True)
class GraphDrawing:
    svg: str
    nodes_dropped: int  # nodes beyond `max_nodes` (lowest scores) left out
    edges_drawn: int
    edges_total: int  # links among the drawn nodes


def graph_svg(nodes: Sequence[GraphNode], edges: Sequence[tuple[str, str, int]], *, max_nodes: int = 150,
              edges_per_node: int = 6, highlight: str | None = None, width: int = 900, height: int | None = None,
              seed: int = 7) -> GraphDrawing:
    """The accounts as nodes (radius and colour by score and decision) joined by their links,
    each connected group laid out by networkx's spring layout (fixed seed) and the groups packed in
    rows. Only the `max_nodes` highest-scored nodes are drawn, and of their links each node's
    `edges_per_node` heaviest (a campaign of a few hundred accounts has tens of thousands of links;
    the layout still uses all of them)."""
    import networkx as nx

    if not nodes:
        return GraphDrawing(_empty(width, 80, "no accounts"), 0, 0, 0)
    kept = sorted(nodes, key=lambda n: (-n.score, n.id))[:max_nodes]
    dropped = len(nodes) - len(kept)
    ids = {n.id for n in kept}
    g = nx.Graph()
    g.add_nodes_from(sorted(ids))
    for a, b, w in edges:
        if a in ids and b in ids and a != b:
            g.add_edge(a, b, weight=g.get_edge_data(a, b, {"weight": 0})["weight"] + int(w))
    for _, _, d in g.edges(data=True):
        d["pull"] = 1.0 + math.log(d["weight"])  # heavy links pull harder, without collapsing a clique
    # each group (a connected component, split into Louvain communities when large) is laid out on
    # its own, then the groups are packed in rows, biggest first: one force layout of them all
    # squeezes each dense group of sybils into a blot and flings loners to the corners
    groups = []
    for comp in nx.connected_components(g):
        parts = (nx.community.louvain_communities(g.subgraph(comp).copy(), weight="weight", seed=seed)
                 if len(comp) > 40 else [comp])
        groups += [sorted(p) for p in parts]
    groups.sort(key=lambda c: (-len(c), c[0]))
    unit: dict[str, tuple[float, float]] = {}
    cells: list[tuple[list[str], float]] = []
    for members in groups:
        if len(members) == 1:
            unit[members[0]] = (0.5, 0.5)
        else:
            raw = nx.spring_layout(g.subgraph(members).copy(), seed=seed, weight="pull")
            xs = [p[0] for p in raw.values()]
            ys = [p[1] for p in raw.values()]
            sx, sy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
            unit.update({n: (0.1 + 0.8 * (p[0] - min(xs)) / sx, 0.1 + 0.8 * (p[1] - min(ys)) / sy)
                         for n, p in raw.items()})
        cells.append((members, math.sqrt(len(members))))
    pad = 14
    row_w = max(max(side for _, side in cells), math.sqrt(sum(side * side for _, side in cells) * 2.6))
    origin: list[tuple[float, float]] = []
    x = y = row_h = 0.0
    for _, side in cells:
        if x + side > row_w + 1e-9:
            x, y, row_h = 0.0, y + row_h, 0.0
        origin.append((x, y))
        x, row_h = x + side, max(row_h, side)
    used_w = max(ox + side for (ox, _), (_, side) in zip(origin, cells))
    used_h = y + row_h
    scale = (width - 2 * pad) / used_w
    height = height or int(max(200, min(640, used_h * scale + 2 * pad)))
    scale = min(scale, (height - 2 * pad) / used_h)
    left = (width - used_w * scale) / 2
    xy = {n: (left + (ox + unit[n][0] * side) * scale, pad + (oy + unit[n][1] * side) * scale)
          for (members, side), (ox, oy) in zip(cells, origin) for n in members}
    # the heaviest spanning tree keeps every bridge between groups visible
    drawn: set[tuple[str, str]] = {tuple(sorted((a, b))) for a, b in nx.maximum_spanning_tree(g, weight="weight").edges}
    for n in g.nodes:
        heaviest = sorted(g[n].items(), key=lambda kv: (-kv[1]["weight"], kv[0]))[:edges_per_node]
        drawn.update(tuple(sorted((n, m))) for m, _ in heaviest)
    base_r = 10.0 if len(kept) <= 40 else 7.0 if len(kept) <= 100 else 5.5
    peak_w = max((d["weight"] for _, _, d in g.edges(data=True)), default=1)
    out = [f'<svg class="chart graph" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="accounts linked by shared wrappers and near-duplicate prompts">']
    for a, b in sorted(drawn):
        (ax, ay), (bx, by) = xy[a], xy[b]
        sw = 0.6 + 2.4 * g[a][b]["weight"] / peak_w
        out.append(f'<line class="edge" x1="{ax:.0f}" y1="{ay:.0f}" x2="{bx:.0f}" y2="{by:.0f}" '
                   f'stroke-width="{sw:.1f}"/>')
    labels = len(kept) <= 12
    for n in sorted(kept, key=lambda n: n.score):  # highest scores drawn last, on top
        x, y = xy[n.id]
        r = base_r * (0.45 + 0.55 * max(0.0, min(1.0, n.score)))
        cls = f"node {_e(n.decision)}" + (" selected" if n.id == highlight else "")
        circle = (f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}">'
                  f'<title>{_e(n.id)}: score {n.score:.3f}, {_e(n.decision)}, {g.degree(n.id)} links</title></circle>')
        if labels:
            circle += f'<text class="node-label" x="{x + r + 2:.1f}" y="{y + 3:.1f}">{_e(n.id)}</text>'
        out.append(f'<a href="{_e(n.href)}">{circle}</a>' if n.href else circle)
    out.append("</svg>")
    return GraphDrawing("".join(out), dropped, len(drawn), g.number_of_edges())


# -- 2-D map of prompt embeddings -------------------------------------------------------------------

def map_svg(points: Sequence[tuple[float, float, str]], *, explained: tuple[float, float] = (0.0, 0.0),
            width: int = 900, height: int = 520, max_highlight: int = 2_000) -> str:
    """Organic prompts as a density background (a grid of cells shaded by count), the highlighted
    prompts (kind "account" or "campaign") as dots on top, at most `max_highlight` of them."""
    if not points:
        return _empty(width, 80, "no prompts to map")
    background = [(x, y) for x, y, k in points if k == "organic"]
    front = [(x, y, k) for x, y, k in points if k != "organic"]
    if len(front) > max_highlight:
        stride = len(front) / max_highlight
        front = [front[int(i * stride)] for i in range(max_highlight)]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 <= y0:
        y0, y1 = y0 - 1, y1 + 1
    padx, pady = (x1 - x0) * 0.02, (y1 - y0) * 0.02
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady
    left, right, top, bottom = 10, 10, 10, 26
    pw, ph = width - left - right, height - top - bottom
    # about five background prompts per cell, so the shading reads as density, not as noise
    cells = max(100, min(4_000, len(background) // 5))
    gx = max(10, round(math.sqrt(cells * pw / ph)))
    gy = max(6, round(cells / gx))

    def place(x: float, y: float) -> tuple[float, float]:
        fx = min(max((x - x0) / (x1 - x0), 0.0), 1.0)
        fy = min(max((y - y0) / (y1 - y0), 0.0), 1.0)
        return left + fx * pw, top + (1 - fy) * ph

    out = [f'<svg class="chart map" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="prompt embeddings, organic traffic as background">',
           f'<rect class="map-frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>']
    if background:
        counts: dict[tuple[int, int], int] = {}
        for x, y in background:
            px, py = place(x, y)
            cell = (min(gx - 1, int((px - left) / pw * gx)), min(gy - 1, int((py - top) / ph * gy)))
            counts[cell] = counts.get(cell, 0) + 1
        peak = max(counts.values())
        cw, ch = pw / gx, ph / gy
        out.append('<g shape-rendering="crispEdges">')
        for (cx, cy), n in counts.items():
            level = 1 + min(4, int(4 * math.log1p(n) / math.log1p(peak))) if peak > 1 else 1
            out.append(f'<rect class="density d{level}" x="{left + cx * cw:.1f}" y="{top + cy * ch:.1f}" '
                       f'width="{cw + 0.2:.1f}" height="{ch + 0.2:.1f}"/>')
        out.append("</g>")
    for x, y, k in front:
        px, py = place(x, y)
        out.append(f'<circle class="pt {_e(k)}" cx="{px:.1f}" cy="{py:.1f}" r="{2.2 if len(front) > 500 else 3}"/>')
    out.append(f'<text class="tick" x="{left}" y="{height - 8}">PC1 {explained[0]:.0%} of variance · '
               f'PC2 {explained[1]:.0%} · {len(background):,} organic prompts shaded, '
               f'{len(front):,} highlighted</text>')
    out.append("</svg>")
    return "".join(out)
