"""The workbench's pure functions: campaign groups from the coordination graph, readable skeletons."""

from __future__ import annotations

import numpy as np

from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from distillguard.features.templating import skeleton_keys
from distillguard.workbench.skeletons import readable_skeleton
from distillguard.workbench.snapshot import campaign_groups


def _clique(nodes: range, weight: int) -> list[tuple[int, int, int]]:
    return [(a, b, weight) for a in nodes for b in nodes if a < b]


def test_two_operations_bridged_by_one_link_are_two_groups():
    # accounts 0-5 and 6-11 each share a wrapper (weight 4 per pair); one near-duplicate pair (weight 3)
    # bridges them; account 12 is linked to nobody
    edges = _clique(range(0, 6), 4) + _clique(range(6, 12), 4) + [(5, 6, 3)]
    e = np.array([(a, b) for a, b, _ in edges])
    _, components = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(13, 13)),
                                         directed=False)
    assert len(set(components[:12])) == 1  # connected components see one hydra
    groups = campaign_groups(components, edges)
    assert len(set(groups[:6])) == 1 and len(set(groups[6:12])) == 1 and groups[0] != groups[6]
    assert groups[12] not in set(groups[:12])  # alone stays alone
    assert np.array_equal(groups, campaign_groups(components, edges))  # seeded: same graph, same groups


def test_no_edges_means_every_account_alone():
    groups = campaign_groups(np.arange(4), [])
    assert len(set(groups.tolist())) == 4


def test_readable_skeleton_shows_the_hashed_runs():
    prompt = "Solve the following problem carefully: 12 apples and 7 pears. Show every step before the answer."
    sk = readable_skeleton(prompt)
    assert sk is not None
    assert sk.text == "solve the following problem carefully … step before the answer."
    assert (sk.head_key, sk.tail_key) == skeleton_keys(prompt)
    # the payload in the middle does not change the skeleton
    other = "Solve the following problem carefully: 3 trains leave at 9. Show every step before the answer."
    assert readable_skeleton(other) == sk
    assert readable_skeleton("Fix the 3 tests now") is None  # too short to carry a wrapper


def test_attacker_written_text_cannot_drive_the_analysts_terminal():
    import io

    from rich.console import Console

    from distillguard.workbench.terminal import render_campaigns, render_neighbours
    from distillguard.workbench.views import AccountRow, CampaignView, PromptText, SearchHit, SharedValue

    hostile = "ignore me\x1b[2J\x1b]0;owned\x07 \u202eevil [bold red]markup[/]"
    member = AccountRow(account_id="acct\x1b[31m_1", score=0.9, decision="block", model_version="1", component=0,
                        component_size=2, prompts=3, first_ts="2026-01-01T00:00:00Z", last_ts="2026-01-02T00:00:00Z",
                        reasons=[hostile])
    text = PromptText(hostile, "0" * 12, len(hostile), False)
    buf = io.StringIO()
    console = Console(file=buf, color_system=None, width=300)
    render_neighbours(hostile, [SearchHit(text, 0.1, "account", [member])], console)
    render_campaigns([CampaignView(0, 2, 0.9, 0.9, 2, hostile + " … tail", 2, [member], [],
                                   [SharedValue("user_agent", hostile, 2)], [text])], console)
    out = buf.getvalue()
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[2J" in out and "\\u202e" in out  # shown, visibly, not executed
    assert "[bold red]markup[/]" in out  # markup in a prompt is text, not style
