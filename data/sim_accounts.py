"""One simulated account's events: how each kind of user, script and harvester behaves.

`simulate_account` is deterministic in (config.seed, plan.index): any account can be generated
alone, in any order or process. Prompts come from `sim_grammar` through a `PromptRandom` whose
vocabulary follows the week of each prompt (`sim_drift`); organic people also send texts other
users send (`sim_shared_texts`). Which optional fields an account's events carry is decided by its
client (`app`, `sdk`, `key_only`) and its network, the same way for every class.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from distillguard.data import sim_grammar as G
from distillguard.data import sim_shared_texts as S
from distillguard.data import sim_timing as T
from distillguard.data import sim_vocabulary as V
from distillguard.data.sim_campaigns import Campaign, capability_prompt
from distillguard.data.sim_drift import week_of, weekly_vocabulary
from distillguard.data.sim_infrastructure import (
    AccountInfra, CampaignPools, harvester_infra, person_infra, team_infra,
)
from distillguard.data.sim_planning import HARVEST, AccountPlan
from distillguard.data.simulator_config import SimulatorConfig

#: Ground-truth column the simulator keeps in memory (what each prompt was for). It is never written
#: to events files and nothing in features/ or training/ may read it.
INTENT = "sim_intent"

#: What one prompt maker returns: the prompt and what it was for (the INTENT column).
Made = tuple[str, str]


class _AccountWriter:
    """Collects one account's events as columns."""

    def __init__(self, r: G.PromptRandom) -> None:
        self.r = r
        self.t: list[float] = []
        self.prompt: list[str] = []
        self.conv: list[str] = []
        self.intent: list[str] = []

    def new_conversation(self) -> str:
        return "c_" + "%012x" % self.r.getrandbits(48)

    def add(self, t: float, prompt: str, conv: str, intent: str) -> None:
        self.t.append(float(t))
        self.prompt.append(prompt)
        self.conv.append(conv)
        self.intent.append(intent)


class _Week:
    """Moves an account's random stream to the vocabulary of the week of each prompt."""

    def __init__(self, r: G.PromptRandom, config: SimulatorConfig) -> None:
        self.r, self.seed, self.drift = r, config.seed, config.weekly_drift
        self.release_week = week_of(config.release_day * T.DAY)

    def at(self, t: float) -> int:
        week = week_of(t)
        self.r.vocabulary = weekly_vocabulary(self.seed, week, self.drift)
        return week

    def popular(self, t: float) -> str:
        return S.global_pool(self.seed, self.at(t), self.drift, self.release_week).draw(self.r)


def _conversations(w: _AccountWriter, times: np.ndarray, sessions_gap_s: float, make: Callable[[float], Made],
                   p_conversation: float, p_follow: float) -> None:
    """People: consecutive prompts close in time form a session; many sessions are one conversation
    whose later turns refer back to earlier ones. Every prompt gets a conversation id here; the
    account's client decides later whether its events carry them."""
    r = w.r
    conv: str | None = None
    prev, last_t = "", -np.inf
    for t in times:
        if t - last_t > sessions_gap_s:
            conv = w.new_conversation() if r.random() < p_conversation else None
            prompt, intent = make(t)
        elif conv is not None and r.random() < p_follow:
            prompt, intent = G.follow_up(r, prev), "follow_up"
        else:
            prompt, intent = make(t)
        # a session that is not one conversation sends each prompt as its own
        w.add(t, prompt, conv if conv is not None else w.new_conversation(), intent)
        prev, last_t = prompt, t


def _organic_voice(r: G.PromptRandom, plan: AccountPlan, rng: np.random.Generator,
                   config: SimulatorConfig) -> Callable[[float], Made]:
    """What one person sends at time t: mostly their own requests in their own words, sometimes a text
    everybody sends, their cohort's texts or template, or a tutorial template around their request."""
    week = _Week(r, config)
    grammar = G.ORGANIC_GRAMMARS[plan.archetype]
    others = list(G.ORGANIC_GRAMMARS.values())  # people wander outside their main use now and then
    p_context, p_elaborate = rng.uniform(0.15, 0.75), rng.uniform(0.05, 0.4)
    p_popular = rng.uniform(0.3, 0.7) if plan.light else rng.uniform(*config.popular_text_rate)
    p_template = rng.uniform(*config.template_rate)
    p_cohort = rng.uniform(*config.cohort_rate) if plan.cohort else 0.0
    seed, drift = config.seed, config.weekly_drift

    def own() -> str:
        return grammar(r) if r.random() < 0.8 else r.choice(others)(r)

    def make(t: float) -> Made:
        wk = week.at(t)
        u = r.random()
        if u < p_popular:
            return week.popular(t), "popular"
        if u < p_popular + p_cohort:
            kind, index = plan.cohort  # type: ignore[misc]
            template = S.cohort_template(seed, kind, index)
            if template is not None and r.random() < 0.6:
                return template.replace("{payload}", own()), "cohort_template"
            text = S.cohort_texts(seed, kind, index, wk, drift).draw(r)
            return (text if r.random() < 0.8 else G.as_person_would(r, text, p_context, 0.0)), "cohort_text"
        if r.random() < p_template:
            return S.tutorial_template(r, own()), "tutorial_template"
        return G.as_person_would(r, own(), p_context, p_elaborate), "organic"

    return make


def _organic(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, config: SimulatorConfig) -> None:
    days = config.days
    tz = float(rng.choice([-8, -7, -6, -5, -4, -3, 0, 1, 2, 3, 5.5, 7, 8, 9, 10]))
    if plan.light:  # tries the service once or twice, within a few days
        first = rng.uniform(0, days - 0.05)
        last = min(days, first + rng.uniform(0.02, 3))
    elif plan.established:
        first, last = 0.0, days
    else:  # signs up inside the window
        first = rng.uniform(0, days - 1)
        last = min(days, first + rng.uniform(3, days))
    times = T.session_times(rng, plan.n_prompts, tz_hours=tz, first_day=first, last_day=last,
                            hour_p=T.DIURNAL_P, mean_session=rng.uniform(2, 6), gap_mean_s=rng.uniform(40, 240))
    _conversations(w, times, 1800, _organic_voice(w.r, plan, rng, config), p_conversation=0.8, p_follow=0.55)


def _first_day(plan: AccountPlan, rng: np.random.Generator, days: float) -> float:
    """Day a benign service starts using the API: at the window's start, or when it signs up."""
    return 0.0 if plan.established else float(rng.uniform(0, days * 0.8))


def _eval_runner(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, config: SimulatorConfig) -> None:
    r, days, release_day = w.r, config.days, config.release_day
    week = _Week(r, config)
    first = _first_day(plan, rng, days)
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
        if run == 0 and first <= release_day < days and r.random() < 0.6:
            day = release_day + rng.uniform(0.05, 1.2)  # benchmark the new model as soon as it lands
            start = day * T.DAY
        else:
            day = np.floor(rng.uniform(first, days))
            hour = cron_hour if cron_hour is not None else rng.choice(24, p=T.WORK_HOURS_P) + rng.random()
            start = float(T.fold_into_days(np.array([day * T.DAY + (hour - tz) * T.HOUR]), first, days - 0.2)[0])
        t_all.append(T.constant_rate_times(rng, size, start_s=start, interval_s=interval, jitter_cv=0.08))
        if remaining <= 0:
            break
    fmt_of_run = [r.choice(formats) for _ in t_all]
    for times, fmt in zip(t_all, fmt_of_run):
        week.at(float(times[0]))
        for t in times:
            w.add(t, G.eval_item(r, fmt), w.new_conversation(), "eval_item")


def _coding_agent(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, config: SimulatorConfig) -> None:
    r = w.r
    week = _Week(r, config)
    tz = float(rng.choice([-8, -5, -3, 0, 1, 2, 5.5, 8]))
    times = T.session_times(rng, plan.n_prompts, tz_hours=tz, first_day=_first_day(plan, rng, config.days),
                            last_day=config.days, hour_p=T.WORK_HOURS_P, mean_session=rng.uniform(10, 60),
                            gap_mean_s=rng.uniform(4, 25), gap_cv=0.8)
    makers = (G.agent_step, G.agent_step, G.coding_task, G.developer)

    def make(t: float) -> Made:
        week.at(t)
        return r.choice(makers)(r), "agent_step"

    _conversations(w, times, 900, make, p_conversation=0.95, p_follow=0.1)


def _support_bot(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, config: SimulatorConfig) -> None:
    r = w.r
    company = r.choice(V.COMPANIES)
    tone = r.choice(V.ADJECTIVES)
    template = r.choice((
        "You are the customer support assistant for {co}. Be {tone}. Customer message: {msg}\nReply:",
        "System: support agent for {co}; tone {tone}; never promise refunds.\nUser: {msg}",
        "[{co} helpdesk] Draft a {tone} reply to this ticket: {msg}",
    ))
    tz = float(rng.choice([-8, -5, 0, 1, 3, 8]))
    times = T.spread_times(rng, plan.n_prompts, tz_hours=tz, first_day=_first_day(plan, rng, config.days),
                           last_day=config.days, hour_p=T.hour_profile_flattened(0.5))
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


def _data_labelling(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, config: SimulatorConfig) -> None:
    r, seed = w.r, config.seed
    week = _Week(r, config)
    kind, template = _team_template(seed, plan.group)
    team_r = random.Random(f"team-tz:{seed}:{plan.group}")
    tz = float(team_r.choice([-5, 0, 1, 5.5, 8]))
    first = 0.0 if plan.established else team_r.uniform(0, config.days * 0.8)  # the team starts together
    times = T.session_times(rng, plan.n_prompts, tz_hours=tz, first_day=first, last_day=config.days,
                            hour_p=T.WORK_HOURS_P, mean_session=rng.uniform(20, 60), gap_mean_s=rng.uniform(15, 60),
                            gap_cv=0.3)
    for t in times:
        week.at(t)
        if kind == "sentiment":
            p = template.format(x=G.review_text(r))
        elif kind == "grading":
            q, a = G.answer_to_grade(r)
            p = template.format(q=q, x=a)
        else:
            p = template.format(x=G.sentence(r) if r.random() < 0.6 else G.casual(r))
        w.add(t, p, w.new_conversation(), "labelling_item")


_HARVEST_FOLLOW_UPS = ("Now explain the reasoning behind your previous answer in more detail.",
                       "Redo that, but show every intermediate step.", "Continue from where you stopped.")


def _harvest_content(r: G.PromptRandom, c: Campaign, week: _Week, t: float, prev: str,
                     follow_up: bool) -> Made:
    """What a campaign account asks at time t: a follow-up on its previous turn, a mundane hydra
    prompt (some of them texts everybody sends), or the capability it harvests."""
    week.at(t)
    if follow_up and prev:
        return r.choice((*_HARVEST_FOLLOW_UPS, G.follow_up(r, prev))), "follow_up"
    if r.random() < c.hydra_mix:
        if r.random() < 0.15:
            return week.popular(t), "hydra"
        return G.as_person_would(r, r.choice([G.ORGANIC_GRAMMARS[g] for g in c.hydra_grammars])(r)), "hydra"
    return capability_prompt(r, c), "capability"


def _harvester(w: _AccountWriter, plan: AccountPlan, rng: np.random.Generator, config: SimulatorConfig) -> None:
    r, days = w.r, config.days
    c = plan.campaign
    assert c is not None
    week = _Week(r, config)
    start = min(c.start_day, days - 1) * T.DAY
    span = min(c.span_days, days - c.start_day) * T.DAY
    # accounts are burned and replaced: each is active for part of the campaign, joining in waves
    own_start = start + rng.uniform(0, 0.6) * span
    own_span = max(0.5 * T.DAY, rng.uniform(0.35, 1.0) * (start + span - own_start))
    n = plan.n_prompts
    if c.schedule == "round_robin":  # one dispatcher drives every account through the whole campaign
        times = T.round_robin_times(rng, n, rank=plan.rank, group_size=plan.group_size, campaign_start_s=start,
                                    span_s=span, jitter_cv=0.05)
    elif c.schedule == "diurnal_mimicry":
        first = own_start / T.DAY
        times = T.session_times(rng, n, tz_hours=float(rng.choice([-8, -5, 0, 1, 3, 8])), first_day=first,
                                last_day=min(days, first + own_span / T.DAY), hour_p=T.DIURNAL_P,
                                mean_session=rng.uniform(3, 12), gap_mean_s=rng.uniform(30, 300))
    else:
        times = T.constant_rate_times(rng, n, start_s=own_start, interval_s=(own_span * rng.uniform(0.6, 0.95)) / n,
                                      jitter_cv=rng.uniform(0.1, 0.5))
    prev = ""
    conv = ""
    for t in np.sort(times):
        prompt, intent = _harvest_content(r, c, week, float(t), prev, r.random() < c.multi_turn_rate)
        if intent != "follow_up":
            conv = w.new_conversation()
        w.add(t, prompt, conv, intent)
        prev = prompt


def _adaptive_harvester(plan: AccountPlan, config: SimulatorConfig) -> pd.DataFrame:
    """A campaign account that behaves like an organic person: it copies a (virtual) organic person's
    whole stream (timing, sessions, conversation grouping, model choice, client and metadata, volume)
    and puts its own content in: follow-ups where the person followed up, otherwise hydra or the
    capability it harvests. Only what it asks, and how its campaign's accounts share that, remain."""
    assert plan.campaign is not None and plan.donor is not None
    donor = replace(plan, archetype=plan.donor, campaign=None, group=-1, rank=0, group_size=1, cohort=None,
                    donor=None)
    frame = simulate_account(donor, config, None, stream="donor")
    r = G.PromptRandom(f"adaptive:{config.seed}:{plan.index}")
    week = _Week(r, config)
    t = (frame["ts"] - pd.Timestamp(config.start)).dt.total_seconds().to_numpy()
    prompts, intents = [], []
    prev = ""
    for ti, donor_intent in zip(t.tolist(), frame[INTENT].tolist()):
        prompt, intent = _harvest_content(r, plan.campaign, week, ti, prev, donor_intent == "follow_up")
        prompts.append(prompt)
        intents.append(intent)
        prev = prompt
    return frame.assign(prompt=prompts, **{INTENT: intents})


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


_BEHAVIOUR: dict[str, Callable[[_AccountWriter, AccountPlan, np.random.Generator, SimulatorConfig], None]] = {
    HARVEST: _harvester, "eval_runner": _eval_runner, "coding_agent": _coding_agent, "support_bot": _support_bot,
    "data_labelling": _data_labelling,
}


def simulate_account(plan: AccountPlan, config: SimulatorConfig, pools: CampaignPools | None, *,
                     stream: str = "account") -> pd.DataFrame:
    """All events of one account (contract columns and INTENT), deterministic in (config.seed, plan.index)."""
    if plan.campaign is not None and plan.campaign.adaptive and stream == "account":
        return _adaptive_harvester(plan, config)
    r = G.PromptRandom(f"{stream}:{config.seed}:{plan.index}")
    rng = np.random.default_rng([config.seed, 2 if stream == "account" else 3, plan.index])
    w = _AccountWriter(r)
    arch = plan.archetype
    _BEHAVIOUR.get(arch, _organic)(w, plan, rng, config)
    if arch == HARVEST:
        infra = harvester_infra(r, plan.campaign, pools, plan.rank)  # type: ignore[arg-type]
    elif arch == "data_labelling":
        infra = team_infra(config.seed, plan.group)
    else:
        infra = person_infra(r, arch, plan.client)
    return _to_frame(w, plan, infra, r, rng, config)


def _to_frame(w: _AccountWriter, plan: AccountPlan, infra: AccountInfra, r: random.Random,
              rng: np.random.Generator, config: SimulatorConfig) -> pd.DataFrame:
    horizon = config.days * T.DAY
    # generators keep inside the window; a session running past its end is the rare spill clipped here
    t = np.clip(np.asarray(w.t, dtype=float), 0.0, horizon - 1.0)
    order = np.argsort(t, kind="stable")
    t = t[order]
    n = len(t)
    endpoints = [infra.endpoint(r) for _ in range(n)]
    ts = pd.Timestamp(config.start) + pd.to_timedelta(np.round(t * 1e6).astype("int64"), unit="us")
    frame = pd.DataFrame({
        "account_id": plan.account_id,
        "ts": ts,
        "prompt": [w.prompt[i] for i in order],
        "conversation_id": [w.conv[i] for i in order],
        "model": _models(r, rng, plan, t, config),
        "ip": [e.ip for e in endpoints],
        "asn": pd.array([e.asn for e in endpoints], dtype="Int64"),
        "payment_fingerprint": infra.payment_fingerprint,
        "user_agent": [r.choice(infra.user_agents) for _ in range(n)],
        INTENT: [w.intent[i] for i in order],
    })
    # what the client leaves out, the same rule for every class of account
    if plan.client != "app":
        frame["conversation_id"] = None
    if plan.client == "key_only":
        frame[["payment_fingerprint", "user_agent", "ip"]] = None
        frame["asn"] = pd.array([pd.NA] * n, dtype="Int64")
    if plan.no_network:
        frame["ip"] = None
        frame["asn"] = pd.array([pd.NA] * n, dtype="Int64")
    return frame
