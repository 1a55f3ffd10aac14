"""What every account feature declares about itself. Each family module lists its columns as
`Feature`s; `catalog` assembles them, so a column without code (or code without a column) cannot
exist."""

from __future__ import annotations

from typing import NamedTuple

#: Ablation groups: what an account asks and how its accounts share it, against how it behaves
#: (timing, conversations, model choice, network and billing metadata), which a harvester controls.
CONTENT, BEHAVIOUR = "content", "behaviour"


class Feature(NamedTuple):
    name: str
    family: str
    meaning: str
    range: str
    #: An analyst's sentence for a reason, formatted with `value`, `organic` (the organic median in
    #: training), the row's other features by name, and `<name>_count` (2**value - 1 of a log2(1 + n)
    #: feature); empty: a generic "name = value (organic median …)".
    reason: str = ""
    #: +1: one-sided evidence, the score may only rise with it (LightGBM monotone constraint); an
    #: absent optional field maps it to its minimum, so absence can never raise a score.
    monotone: int = 0
    #: the optional contract field it reads, if any
    needs: str | None = None
    kind: str = CONTENT
