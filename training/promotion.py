"""The promotion gate: a candidate becomes champion only if it beats the champion on the
out-of-time hold-out and keeps the operator's promises. Pure: figures in, decision out.

A candidate must
1. block at most `MAX_ORGANIC_BLOCKED` of the out-of-time hold-out's organic accounts (at its own
   block threshold: the figure an operator lives with);
2. keep recall at 1% FPR on the adaptive copy no worse than the champion's (harvesters that copy
   organic behaviour must not slip through more often than before);
3. beat the champion on out-of-time recall at 1% FPR (ties broken by out-of-time PR-AUC).
With no champion to compare with, the first candidate is promoted with a warning that names the
gate figures it misses, so that a first run still ends with a champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_ORGANIC_BLOCKED = 0.001
PRIMARY = "oot.recall_at_1pct_fpr"
TIEBREAK = "oot.pr_auc"
ORGANIC_BLOCKED = "oot.organic_blocked"
ADAPTIVE = "adaptive.recall_at_1pct_fpr"
#: The figures the gate reads, shown side by side in its message.
GATE_FIGURES: tuple[str, ...] = (PRIMARY, TIEBREAK, ORGANIC_BLOCKED, ADAPTIVE)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    text: str
    misses: list[str] = field(default_factory=list)  # absolute promises the candidate breaks (warnings)


def _get(m: dict[str, float], key: str) -> float:
    v = m.get(key, float("nan"))
    return float(v) if v is not None else float("nan")


def absolute_misses(candidate: dict[str, float]) -> list[str]:
    """The promises a candidate breaks whatever the champion: organic accounts blocked out of time."""
    blocked = _get(candidate, ORGANIC_BLOCKED)
    if not np.isfinite(blocked):
        return [f"{ORGANIC_BLOCKED} is unknown (no organic account in the out-of-time hold-out)"]
    if blocked > MAX_ORGANIC_BLOCKED + 1e-12:
        return [f"{ORGANIC_BLOCKED} {blocked:.2%} > {MAX_ORGANIC_BLOCKED:.1%}"]
    return []


def judge(candidate: dict[str, float], champion: dict[str, float] | None, *, version: str,
          champion_version: str | None, champion_problem: str | None = None) -> GateDecision:
    """Whether candidate `version` replaces the champion. `champion` is the champion's figures on the
    same hold-outs, or None when there is no champion or it cannot be scored (`champion_problem` says why)."""
    misses = absolute_misses(candidate)
    if champion is None:
        why = champion_problem or "there was no champion"
        text = f"v{version} promoted to champion ({why})"
        if misses:
            text += "; WARNING: it misses the gate: " + "; ".join(misses)
        return GateDecision(True, text, misses)

    c_p, h_p = _get(candidate, PRIMARY), _get(champion, PRIMARY)
    refusals = list(misses)
    c_a, h_a = _get(candidate, ADAPTIVE), _get(champion, ADAPTIVE)
    if np.isfinite(h_a) and not (c_a >= h_a - 1e-9):
        refusals.append(f"{ADAPTIVE} {c_a:.3f} < champion's {h_a:.3f}")
    if np.isclose(c_p, h_p) or not (np.isfinite(c_p) and np.isfinite(h_p)):
        better = _get(candidate, TIEBREAK) > _get(champion, TIEBREAK) + 1e-9
        if not better:
            refusals.append(f"it does not beat v{champion_version}: {PRIMARY} {c_p:.3f} vs {h_p:.3f}, "
                            f"{TIEBREAK} {_get(candidate, TIEBREAK):.3f} vs {_get(champion, TIEBREAK):.3f}")
    elif c_p < h_p:
        refusals.append(f"it does not beat v{champion_version}: {PRIMARY} {c_p:.3f} vs {h_p:.3f}")
    if refusals:
        return GateDecision(False, f"v{version} registered as challenger, NOT promoted: " + "; ".join(refusals), misses)
    return GateDecision(True, f"v{version} beats champion v{champion_version} out of time ({PRIMARY} {c_p:.3f} vs "
                              f"{h_p:.3f}, {ADAPTIVE} {c_a:.3f} vs {h_a:.3f}, {ORGANIC_BLOCKED} "
                              f"{_get(candidate, ORGANIC_BLOCKED):.2%}): promoted to champion", misses)
