"""The labelled-traffic simulator: organic users, hard benign scripts and harvesting campaigns.

`plan_accounts` decides who exists (cheap, all in memory); `iter_simulation_chunks` turns the
plan into events a chunk of accounts at a time, so memory is bounded by the chunk, not the run;
`write_simulation` streams the chunks to `events.parquet` and writes `labels.csv`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.data import sim_grammar as G
from distillguard.data import sim_timing as T
from distillguard.data.contract import EVENTS_SCHEMA, LABELS_SCHEMA
from distillguard.data.sim_campaigns import Campaign, build_campaign, capability_prompt
from distillguard.data.sim_infrastructure import (
    AccountInfra, CampaignPools, campaign_pools, harvester_infra, person_infra, team_infra,
)
from distillguard.data.simulator_config import SimulatorConfig

HARVEST = "harvest"

# (median prompts, lognormal sigma, cap) per benign archetype: heavy tails on purpose.
_VOLUME: dict[str, tuple[float, float, int]] = {
    "casual": (20, 1.2, 3000), "student": (30, 1.2, 3000), "writer": (30, 1.2, 3000),
    "developer": (50, 1.3, 5000), "researcher": (30, 1.2, 3000), "professional": (40, 1.2, 3000),
    "eval_runner": (220, 0.9, 6000), "coding_agent": (260, 1.0, 8000), "support_bot": (350, 0.8, 8000),
    "data_labelling": (140, 0.7, 3000),
}


@dataclass(frozen=True)
class AccountPlan:
    index: int
    account_id: str
    archetype: str  # an organic / hard benign archetype, or HARVEST
    n_prompts: int
    campaign: Campaign | None = None
    group: int = -1  # campaign index or labelling team index
    rank: int = 0  # position inside the campaign or team
    group_size: int = 1

    @property
    def label(self) -> int:
        return int(self.archetype == HARVEST)

    @property
    def campaign_label(self) -> str:
        return self.campaign.name if self.campaign else self.archetype


#: Ground-truth column the simulator keeps in memory (what each prompt was for). It is never written
#: to events files and nothing in features/ or training/ may read it.
INTENT = "sim_intent"


@dataclass(frozen=True)
class Simulation:
    events: pd.DataFrame  # contract columns only
    labels: pd.DataFrame
    intent: pd.Series  # aligned with events: capability / hydra / follow_up / organic / eval_item / ...


def _weights(mix: dict[str, float]) -> tuple[list[str], np.ndarray]:
    names = sorted(mix)
    w = np.array([mix[n] for n in names], dtype=float)
    return names, w / w.sum()


def plan_accounts(config: SimulatorConfig) -> tuple[list[AccountPlan], list[Campaign]]:
    """Who exists: every account's archetype, volume and group. Deterministic in the config."""
    rng = np.random.default_rng([config.seed, 1])
    n = config.accounts
    n_harvest = int(round(n * config.harvest_fraction))
    n_hard = int(round(n * config.hard_benign_fraction))
    n_organic = n - n_harvest - n_hard

    campaigns = [build_campaign(style, i, config.seed, config.hydra_mix)
                 for style in config.campaign_styles for i in range(config.campaigns_per_style)]
    if n_harvest and n_harvest < 2 * len(campaigns):
        campaigns = campaigns[: max(1, n_harvest // 2)]

    org_names, org_p = _weights(config.organic_mix)
    hard_names, hard_p = _weights(config.hard_benign_mix)
    archetypes = list(rng.choice(org_names, size=n_organic, p=org_p)) + list(rng.choice(hard_names, size=n_hard, p=hard_p))

    ids = set()
    while len(ids) < n:
        ids.update("acct_" + "%010x" % int(v) for v in rng.integers(0, 2 ** 40, size=n - len(ids)))
    id_list = sorted(ids)
    rng.shuffle(id_list)

    plans: list[AccountPlan] = []
    team_sizes: dict[int, int] = {}
    team, team_left = -1, 0
    for arch in archetypes:
        med, sigma, cap = _VOLUME[arch]
        volume = int(np.clip(rng.lognormal(np.log(med), sigma), 3, cap))
        group = rank = -1
        if arch == "data_labelling":
            if team_left == 0:
                team, team_left = team + 1, int(rng.integers(2, 8))
            rank, group, team_left = team_sizes.get(team, 0), team, team_left - 1
            team_sizes[team] = rank + 1
        plans.append(AccountPlan(len(plans), id_list[len(plans)], arch, volume, group=group, rank=max(rank, 0)))
    plans = [replace(p, group_size=team_sizes.get(p.group, 1)) for p in plans]

    if n_harvest:
        share = rng.dirichlet(np.full(len(campaigns), 2.0))
        sizes = np.maximum(2, np.floor(share * n_harvest)).astype(int)
        while sizes.sum() > n_harvest:
            sizes[np.argmax(sizes)] -= 1
        sizes[np.argmin(sizes)] += n_harvest - sizes.sum()
        for ci, (camp, size) in enumerate(zip(campaigns, sizes)):
            vols = np.clip(rng.lognormal(np.log(camp.volume_median), 0.45, size=size), 8, 20_000).astype(int)
            for rank, v in enumerate(vols):
                plans.append(AccountPlan(len(plans), id_list[len(plans)], HARVEST, int(v), camp, ci, rank,
                                         int(size)))
    # Interleave kinds so that no file position or chunk says who is who.
    order = rng.permutation(len(plans))
    plans = [replace(plans[j], index=i) for i, j in enumerate(order)]
    return plans, campaigns


class _AccountWriter:
    """Collects one account's events as columns."""

    def __init__(self, r: random.Random) -> None:
        self.r = r
        self.t: list[float] = []
        self.prompt: list[str] = []
        self.conv: list[str | None] = []
        self.intent: list[str] = []

    def new_conversation(self) -> str:
        return "c_" + "%012x" % self.r.getrandbits(48)

    def add(self, t: float, prompt: str, conv: str | None, intent: str) -> None:
        self.t.append(float(t))
        self.prompt.append(prompt)
        self.conv.append(conv)
        self.intent.append(intent)


def _conversations(w: _AccountWriter, times: np.ndarray, sessions_gap_s: float, make: Callable[[], str],
                   p_conversation: float, p_follow: float, send_ids: bool) -> None:
    """People: consecutive prompts close in time form a session; many sessions are one conversation
    whose later turns refer back to earlier ones."""
    r = w.r
    conv: str | None = None
    prev, last_t = "", -np.inf
    for t in times:
        intent = "organic"
        if t - last_t > sessions_gap_s:
            conv = w.new_conversation() if r.random() < p_conversation else None
            prompt = make()
        elif conv is not None and r.random() < p_follow:
            prompt, intent = G.follow_up(r, prev), "follow_up"
        else:
            prompt = make()
        # a session that is not one conversation sends each prompt as its own
        cid = conv if conv is not None else w.new_conversation()
        w.add(t, prompt, cid if send_ids else None, intent)
        prev, last_t = prompt, t


def _organic(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, days: float) -> float:
    r = w.r
    tz = float(rng.choice([-8, -7, -6, -5, -4, -3, 0, 1, 2, 3, 5.5, 7, 8, 9, 10]))
    power_user = plan.n_prompts > 300
    first = 0.0 if power_user else rng.uniform(0, days * 0.7)
    last = days if power_user else min(days, first + rng.uniform(3, days))
    times = T.session_times(rng, plan.n_prompts, tz_hours=tz, first_day=first, last_day=last,
                            hour_p=T.DIURNAL_P, mean_session=rng.uniform(2, 6), gap_mean_s=rng.uniform(40, 240))
    grammar = G.ORGANIC_GRAMMARS[plan.archetype]
    # people wander outside their main use now and then
    others = list(G.ORGANIC_GRAMMARS.values())
    p_context, p_elaborate = rng.uniform(0.15, 0.75), rng.uniform(0.05, 0.4)

    def make() -> str:
        base = grammar(r) if r.random() < 0.8 else r.choice(others)(r)
        return G.as_person_would(r, base, p_context, p_elaborate)

    _conversations(w, times, 1800, make, p_conversation=0.8, p_follow=0.55, send_ids=r.random() < 0.9)
    return tz


def _eval_runner(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, days: float,
                 release_day: float) -> None:
    r = w.r
    tz = float(rng.choice([-8, -5, 0, 1, 8, 9]))
    n, batch = plan.n_prompts, int(rng.integers(25, 250))
    n_runs = max(1, int(np.ceil(n / batch)))
    cron_hour = int(rng.integers(0, 24)) if r.random() < 0.5 else None
    interval = rng.uniform(0.3, 4.0)
    formats = r.sample(G.EVAL_FORMATS, r.randint(1, 3))
    remaining, t_all = n, []
    for run in range(n_runs):
        size = min(batch, remaining)
        remaining -= size
        if run == 0 and release_day < days and r.random() < 0.6:
            day = release_day + rng.uniform(0.05, 1.2)  # benchmark the new model as soon as it lands
            start = day * T.DAY
        else:
            day = np.floor(rng.uniform(0, days))
            hour = cron_hour if cron_hour is not None else rng.choice(24, p=T.WORK_HOURS_P) + rng.random()
            start = float(T.fold_into_days(np.array([day * T.DAY + (hour - tz) * T.HOUR]), 0, days - 0.2)[0])
        t_all.append(T.constant_rate_times(rng, size, start_s=start, interval_s=interval, jitter_cv=0.08))
        if remaining <= 0:
            break
    fmt_of_run = [r.choice(formats) for _ in t_all]
    for times, fmt in zip(t_all, fmt_of_run):
        for t in times:
            w.add(t, G.eval_item(r, fmt), None if r.random() < 0.5 else w.new_conversation(), "eval_item")


def _coding_agent(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, days: float) -> None:
    r = w.r
    tz = float(rng.choice([-8, -5, -3, 0, 1, 2, 5.5, 8]))
    times = T.session_times(rng, plan.n_prompts, tz_hours=tz, first_day=0, last_day=days, hour_p=T.WORK_HOURS_P,
                            mean_session=rng.uniform(10, 60), gap_mean_s=rng.uniform(4, 25), gap_cv=0.8)
    makers = (G.agent_step, G.agent_step, G.coding_task, G.developer)
    _conversations(w, times, 900, lambda: r.choice(makers)(r), p_conversation=0.95, p_follow=0.1, send_ids=True)


def _support_bot(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, days: float) -> None:
    r = w.r
    from distillguard.data import sim_vocabulary as V
    company = r.choice(V.COMPANIES)
    tone = r.choice(V.ADJECTIVES)
    template = r.choice((
        "You are the customer support assistant for {co}. Be {tone}. Customer message: {msg}\nReply:",
        "System: support agent for {co}; tone {tone}; never promise refunds.\nUser: {msg}",
        "[{co} helpdesk] Draft a {tone} reply to this ticket: {msg}",
    ))
    tz = float(rng.choice([-8, -5, 0, 1, 3, 8]))
    times = T.spread_times(rng, plan.n_prompts, tz_hours=tz, first_day=0, last_day=days,
                           hour_p=T.hour_profile_flattened(0.5))
    for t in times:
        msg = r.choice(V.SUPPORT_ISSUES)
        if r.random() < 0.5:
            msg = f"{msg}. order {r.randint(10000, 99999)}, {r.choice(V.NAMES)}"
        w.add(t, template.format(co=company, tone=tone, msg=msg), w.new_conversation(), "support_ticket")


def _team_template(seed: int, team: int) -> tuple[str, str]:
    r = random.Random(f"team-template:{seed}:{team}")
    kind = r.choice(("sentiment", "grading", "classification"))
    if kind == "sentiment":
        t = r.choice(("Label the sentiment of this review as positive, negative or neutral: {x}",
                      "Sentiment (pos/neg/neu) for: {x}"))
    elif kind == "grading":
        t = r.choice(("Rate the quality of this answer from 1 to 5 and explain briefly.\nQuestion: {q}\nAnswer: {x}",
                      "Is the following answer correct and helpful? Score 1-5.\nQ: {q}\nA: {x}"))
    else:
        t = r.choice(("Classify the topic of this text into one of: science, tech, lifestyle, business. Text: {x}",
                      "Which category fits best (support, sales, spam, other)? Message: {x}"))
    return kind, t


def _data_labelling(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, days: float,
                    seed: int) -> None:
    r = w.r
    kind, template = _team_template(seed, plan.group)
    tz = float(random.Random(f"team-tz:{seed}:{plan.group}").choice([-5, 0, 1, 5.5, 8]))
    times = T.session_times(rng, plan.n_prompts, tz_hours=tz, first_day=0, last_day=days, hour_p=T.WORK_HOURS_P,
                            mean_session=rng.uniform(20, 60), gap_mean_s=rng.uniform(15, 60), gap_cv=0.3)
    for t in times:
        if kind == "sentiment":
            p = template.format(x=G.review_text(r))
        elif kind == "grading":
            q, a = G.answer_to_grade(r)
            p = template.format(q=q, x=a)
        else:
            p = template.format(x=G.sentence(r) if r.random() < 0.6 else G.casual(r))
        w.add(t, p, w.new_conversation(), "labelling_item")


def _harvester(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, days: float) -> None:
    r = w.r
    c = plan.campaign
    assert c is not None
    start = min(c.start_day, days - 1) * T.DAY
    span = min(c.span_days, days - c.start_day) * T.DAY
    n = plan.n_prompts
    if c.schedule == "round_robin":
        times = T.round_robin_times(rng, n, rank=plan.rank, group_size=plan.group_size, campaign_start_s=start,
                                    span_s=span, jitter_cv=0.05)
    elif c.schedule == "diurnal_mimicry":
        first = start / T.DAY
        times = T.session_times(rng, n, tz_hours=float(rng.choice([-8, -5, 0, 1, 3, 8])), first_day=first,
                                last_day=first + span / T.DAY, hour_p=T.DIURNAL_P,
                                mean_session=rng.uniform(3, 12), gap_mean_s=rng.uniform(30, 300))
    else:
        own_start = start + rng.uniform(0, 0.3) * span
        times = T.constant_rate_times(rng, n, start_s=own_start, interval_s=(span * rng.uniform(0.4, 0.7)) / n,
                                      jitter_cv=rng.uniform(0.1, 0.5))
    hydra = [G.ORGANIC_GRAMMARS[g] for g in c.hydra_grammars]
    send_ids = c.infra != "clean" or r.random() < 0.5
    prev = ""
    conv: str | None = None
    for t in np.sort(times):
        if prev and r.random() < c.multi_turn_rate:
            intent = "follow_up"
            prompt = r.choice(("Now explain the reasoning behind your previous answer in more detail.",
                               "Redo that, but show every intermediate step.",
                               "Continue from where you stopped.", G.follow_up(r, prev)))
        else:
            conv = w.new_conversation()
            if r.random() < c.hydra_mix:
                prompt, intent = G.as_person_would(r, r.choice(hydra)(r)), "hydra"
            else:
                prompt, intent = capability_prompt(r, c), "capability"
        w.add(t, prompt, conv if send_ids else None, intent)
        prev = prompt


def _models(r: random.Random, rng: np.random.Generator, plan: AccountPlan, t: np.ndarray,
            config: SimulatorConfig) -> list[str]:
    """Which model each request asked for, including how fast the account moved to a new release."""
    release = config.release_day * T.DAY
    arch = plan.archetype
    if arch == HARVEST:
        adopt = release + rng.uniform(1, 20) * T.HOUR if plan.campaign and plan.campaign.pivots_to_new_model else np.inf
        p_new, p_mini = 1.0, 0.0
    elif arch == "eval_runner":
        adopt, p_new, p_mini = release + rng.uniform(2, 30) * T.HOUR, rng.uniform(0.5, 1.0), 0.1
    elif arch == "coding_agent":
        adopt, p_new, p_mini = release + rng.exponential(1.5) * T.DAY, 0.8, 0.05
    else:
        adopt = release + rng.exponential(4.0) * T.DAY if r.random() < 0.6 else np.inf
        p_new, p_mini = rng.uniform(0.4, 0.9), rng.uniform(0, 0.4)
    out = []
    for ti in t:
        if ti >= adopt and r.random() < p_new:
            out.append(config.new_model)
        else:
            out.append(config.mini_model if r.random() < p_mini else config.old_model)
    return out


def simulate_account(plan: AccountPlan, config: SimulatorConfig, pools: CampaignPools | None) -> pd.DataFrame:
    """All events of one account, deterministic in (config.seed, plan.index)."""
    r = random.Random(f"account:{config.seed}:{plan.index}")
    rng = np.random.default_rng([config.seed, 2, plan.index])
    w = _AccountWriter(r)
    days = config.days
    arch = plan.archetype
    if arch == HARVEST:
        _harvester(w, plan, rng, days)
        infra = harvester_infra(r, plan.campaign, pools, plan.rank)  # type: ignore[arg-type]
    elif arch == "eval_runner":
        _eval_runner(w, plan, rng, days, config.release_day)
        infra = person_infra(r, arch)
    elif arch == "coding_agent":
        _coding_agent(w, plan, rng, days)
        infra = person_infra(r, arch)
    elif arch == "support_bot":
        _support_bot(w, plan, rng, days)
        infra = person_infra(r, arch)
    elif arch == "data_labelling":
        _data_labelling(w, plan, rng, days, config.seed)
        infra = team_infra(config.seed, plan.group)
    else:
        _organic(w, plan, rng, days)
        infra = person_infra(r, arch)
    return _to_frame(w, plan, infra, r, rng, config)


def _to_frame(w: _AccountWriter, plan: AccountPlan, infra: AccountInfra, r: random.Random,
              rng: np.random.Generator, config: SimulatorConfig) -> pd.DataFrame:
    horizon = config.days * T.DAY
    # generators keep inside the window; a session running past its end is the rare spill clipped here
    t = np.clip(np.asarray(w.t, dtype=float), 0.0, horizon - 1.0)
    order = np.argsort(t, kind="stable")
    t = t[order]
    endpoints = [infra.endpoint(r) for _ in range(len(t))]
    ts = pd.Timestamp(config.start) + pd.to_timedelta(np.round(t * 1e6).astype("int64"), unit="us")
    return pd.DataFrame({
        "account_id": plan.account_id,
        "ts": ts,
        "prompt": [w.prompt[i] for i in order],
        "conversation_id": [w.conv[i] for i in order],
        "model": _models(r, rng, plan, t, config),
        "ip": [e.ip for e in endpoints],
        "asn": pd.array([e.asn for e in endpoints], dtype="Int64"),
        "payment_fingerprint": infra.payment_fingerprint,
        "user_agent": [r.choice(infra.user_agents) for _ in range(len(t))],
        INTENT: [w.intent[i] for i in order],
    })


def labels_frame(plans: list[AccountPlan]) -> pd.DataFrame:
    return pd.DataFrame({"account_id": [p.account_id for p in plans],
                         "label": np.array([p.label for p in plans], dtype="int8"),
                         "campaign": [p.campaign_label for p in plans]})


def iter_simulation_chunks(config: SimulatorConfig, plans: list[AccountPlan] | None = None,
                           on_account: Callable[[], None] | None = None) -> Iterator[pd.DataFrame]:
    """Events of consecutive accounts, about `config.chunk_rows` rows at a time, each chunk sorted by time."""
    if plans is None:
        plans, _ = plan_accounts(config)
    group_sizes: dict[str, int] = {}
    for p in plans:
        if p.campaign:
            group_sizes[p.campaign.name] = p.group_size
    pools = {p.campaign.name: campaign_pools(config.seed, p.campaign, group_sizes[p.campaign.name])
             for p in plans if p.campaign}
    frames: list[pd.DataFrame] = []
    rows = 0
    for p in plans:
        frames.append(simulate_account(p, config, pools.get(p.campaign.name) if p.campaign else None))
        rows += len(frames[-1])
        if on_account:
            on_account()
        if rows >= config.chunk_rows:
            yield pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)
            frames, rows = [], 0
    if frames:
        yield pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)


def simulate(config: SimulatorConfig) -> Simulation:
    """The whole simulation in memory (for tests and small benchmarks)."""
    plans, _ = plan_accounts(config)
    events = pd.concat(list(iter_simulation_chunks(config, plans)), ignore_index=True)
    return Simulation(events.drop(columns=[INTENT]), labels_frame(plans), events[INTENT])


def write_simulation(config: SimulatorConfig, out_dir: Path, *, progress: bool = False) -> tuple[Path, Path, int]:
    """Stream the simulation to `out_dir/events.parquet` and `out_dir/labels.csv`; return paths and row count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plans, _ = plan_accounts(config)
    events_path, labels_path = out_dir / "events.parquet", out_dir / "labels.csv"
    tmp = events_path.with_suffix(".parquet.tmp")
    rows = 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress, transient=True) as bar:
        task = bar.add_task("accounts", total=len(plans))
        with pq.ParquetWriter(tmp, EVENTS_SCHEMA, compression="zstd") as writer:
            for chunk in iter_simulation_chunks(config, plans, on_account=lambda: bar.advance(task)):
                writer.write_table(pa.Table.from_pandas(chunk.drop(columns=[INTENT]), schema=EVENTS_SCHEMA,
                                                        preserve_index=False))
                rows += len(chunk)
    tmp.replace(events_path)
    labels = pa.Table.from_pandas(labels_frame(plans), schema=LABELS_SCHEMA, preserve_index=False)
    labels.to_pandas().to_csv(labels_path, index=False)
    return events_path, labels_path, rows

