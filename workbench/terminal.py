"""The workbench in the terminal: rich tables for `inspect`, `neighbours` and `campaigns`, and the
same views as JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from distillguard.workbench.views import AccountView, CampaignView, SearchHit

_DECISION_STYLE = {"allow": "green", "review": "yellow", "block": "bold red"}


def to_json(value: object) -> str:
    """Views (dataclasses, lists of them) as indented JSON."""
    return json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value)
                      else [dataclasses.asdict(v) for v in value], indent=2, default=str)


# C0/C1 controls and the bidirectional overrides: attacker-written text must not move the analyst's
# cursor, retitle the terminal or reorder what is shown
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _plain(text: str) -> str:
    """Text a user wrote, safe to print: rich markup escaped, control characters shown as `\\x1b`."""
    return escape(_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                else f"\\u{ord(m.group()):04x}", text))


def _short(text: str, width: int = 110) -> str:
    one = " ".join(text.split())
    return _plain(one if len(one) <= width else one[: width - 1] + "…")


def _score(v: float) -> str:
    """Three decimals, but small scores (next to low thresholds) never shown as 0.000."""
    return f"{v:.3f}" if v >= 0.001 or v == 0 else f"{v:.1e}"


def _decision(d: str) -> str:
    return f"[{_DECISION_STYLE.get(d, '')}]{d}[/]"


def _thresholds_text(thresholds: dict | None, prompts: int) -> str:
    """'review above R, block above B' as the model judged an account with `prompts` prompts."""
    if not thresholds:
        return ""
    cold = prompts <= thresholds.get("cold_max_prompts", 0)
    review = max(thresholds["review"], thresholds.get("cold_review", float("-inf"))) if cold else thresholds["review"]
    block = max(thresholds["block"], thresholds.get("cold_block", float("-inf"))) if cold else thresholds["block"]
    return f"; review above {_score(review)}, block above {_score(block)}" + (" (cold start)" if cold else "")


def render_account(view: AccountView, console: Console, thresholds: dict | None = None,
                   thresholds_version: str | None = None) -> None:
    """The account's page; `thresholds` (of model `thresholds_version`) are shown beside a decision that
    model took."""
    a = view.account
    head = Table.grid(padding=(0, 2))
    head.add_row("account", f"[bold]{_plain(a.account_id)}[/]")
    shown = _thresholds_text(thresholds, a.prompts) if str(a.model_version) == str(thresholds_version) else ""
    head.add_row("score / decision", f"{_score(a.score)}  {_decision(a.decision)}  (model v{_plain(a.model_version)}"
                 f"{shown})")
    head.add_row("prompts", f"{a.prompts:,} from {a.first_ts} to {a.last_ts}, active in {len(view.hourly)} hours")
    if view.model_switches:
        head.add_row("models", ", ".join(f"{_plain(s.model)} from {s.ts}" for s in view.model_switches))
    head.add_row("campaign", f"group #{a.component} with {a.component_size - 1} other accounts"
                 if a.component_size > 1 else "no coordinated accounts found")
    reasons = "\n".join(f"• {_plain(r)}" for r in a.reasons) or "-"
    console.print(Panel(Group(head, "", "[bold]why[/]", reasons), title="distillguard inspect", expand=False))

    overview = Table(title="clusters of its prompts (organic k-means cells)", title_justify="left")
    for col in ("cluster", "prompts", "share here", "share organic", "wrapper skeleton (share)"):
        overview.add_column(col, overflow="fold")
    for c in view.clusters:
        sk = f"{_plain(c.skeleton)} ({c.skeleton_share:.0%})" if c.skeleton else "-"
        overview.add_row(str(c.cluster), str(c.size), f"{c.account_share:.1%}", f"{c.organic_share:.1%}", sk)
    console.print(overview)

    for c in view.clusters[:6]:
        t = Table(title=f"cluster {c.cluster}: {c.size} prompts, {c.account_share:.0%} here vs "
                        f"{c.organic_share:.1%} of organic", title_justify="left", show_lines=False)
        t.add_column("", style="dim", no_wrap=True)
        t.add_column("prompt", overflow="fold")
        t.add_column("distance", justify="right")
        t.add_column("account", overflow="fold")
        t.add_column("score", justify="right")
        for ex in c.examples:
            t.add_row("this account", _short(ex.text), "", "", "")
        for o in c.organic_neighbours:
            t.add_row("nearest organic", _short(o.text.text), f"{o.distance:.3f}", "", "")
        for n in c.account_neighbours:
            t.add_row("other account", _short(n.text.text), f"{n.distance:.3f}", _plain(n.account_id),
                      f"{_score(n.score)} {_decision(n.decision)}")
        console.print(t)
    if len(view.clusters) > 6:
        console.print(f"[dim]{len(view.clusters) - 6} smaller clusters not shown (--json has all)[/]")

    if view.infrastructure:
        t = Table(title="infrastructure (accounts using each value)", title_justify="left")
        for col in ("field", "value", "accounts"):
            t.add_column(col)
        for v in view.infrastructure[:15]:
            t.add_row(v.field, _plain(v.value), str(v.accounts))
        console.print(t)
    if view.campaign_members:
        t = Table(title=f"other accounts in its campaign group #{a.component}", title_justify="left")
        for col in ("account", "score", "decision", "prompts"):
            t.add_column(col)
        for m in view.campaign_members[:20]:
            t.add_row(_plain(m.account_id), _score(m.score), _decision(m.decision), str(m.prompts))
        console.print(t)


def render_neighbours(query: str, hits: Sequence[SearchHit], console: Console) -> None:
    t = Table(title=f"nearest prompts to: {_short(query, 80)}", title_justify="left")
    for col in ("distance", "source", "prompt", "accounts (score, decision)"):
        t.add_column(col, overflow="fold")
    for h in hits:
        accts = ", ".join(f"{_plain(r.account_id)} ({_score(r.score)} {_decision(r.decision)})" for r in h.accounts[:5])
        if len(h.accounts) > 5:
            accts += f" +{len(h.accounts) - 5} more"
        t.add_row(f"{h.distance:.3f}", h.source, _short(h.text.text), accts or "-")
    console.print(t)


def render_campaigns(campaigns: Sequence[CampaignView], console: Console) -> None:
    if not campaigns:
        console.print("no campaign groups of two or more accounts in this snapshot")
        return
    t = Table(title="campaigns: accounts linked by shared wrapper skeletons and near-duplicate prompts",
              title_justify="left", show_lines=True)
    for col in ("group", "accounts", "flagged", "scores (mean / max)", "skeleton (members using it)",
                "shared infrastructure", "top members"):
        t.add_column(col, overflow="fold")
    for c in campaigns:
        shared = ", ".join(f"{v.field}={_plain(v.value)} ({v.accounts})" for v in c.shared[:4]) or "-"
        members = ", ".join(f"{_plain(m.account_id)} {_score(m.score)}" for m in c.members[:5])
        sk = f"{_plain(c.skeleton)} ({c.skeleton_accounts})" if c.skeleton else "-"
        t.add_row(str(c.component), str(c.size), str(c.flagged), f"{c.mean_score:.2f} / {c.max_score:.2f}", sk,
                  shared, members)
    console.print(t)
