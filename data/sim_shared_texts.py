"""Texts that unrelated organic users share, as real traffic has them.

Most prompts are unique, but a heavy tail is not: everybody says "hi"; a viral prompt of the week
is pasted by hundreds of people; a benchmark puzzle is tried by everyone on the day a new model
lands; classmates paste the same homework question, a bootcamp the same interview questions; a
course or a team wraps its members' own questions in the same template, and tutorial templates
("... Let's think step by step.") travel across the whole user base. A detector that links
accounts by shared texts or wrappers must survive all of this without calling it a campaign.

Pools are pure functions of (seed, week, cohort), cached, so any account in any chunk or process
sees the same pools. Global pools are drawn with Zipf weights (exponent `ZIPF_EXPONENT`), which
gives the multiplicity of real traffic: a few texts sent by a large share of users, a long tail
sent by a handful.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from distillguard.data import sim_grammar as G
from distillguard.data import sim_vocabulary as V
from distillguard.data.sim_drift import made_up_word, weekly_vocabulary

ZIPF_EXPONENT = 1.1

#: One-liners every chat service sees every day, from every kind of user.
EVERGREEN: tuple[str, ...] = (
    "hi", "hello", "hey", "test", "thanks!", "thank you", "ok", "hello?", "hi there", "yo", "what can you do?",
    "who are you?", "are you chatgpt?", "tell me a joke", "tell me a fun fact", "what's the weather like",
    "good morning", "help", "can you help me?", "what is the meaning of life?", "write a poem",
    "how are you?", "what day is it today?", "are you sentient?", "what model are you?", "continue",
    "translate this to english", "summarize this", "make it shorter", "explain like i'm five",
    "write a haiku about coffee", "give me a random number between 1 and 10", "flip a coin",
    "what's 2+2", "recommend a good book", "tell me a bedtime story", "write a short story",
)

#: Puzzles people try on every new model (the same exact texts, pasted from social media).
BENCHMARK_PUZZLES: tuple[str, ...] = (
    "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. How much does the ball cost?",
    "If it takes 5 machines 5 minutes to make 5 widgets, how long would it take 100 machines to make 100 widgets?",
    "Sally has 3 brothers. Each brother has 2 sisters. How many sisters does Sally have?",
    "Which is bigger, 9.11 or 9.9?",
    "How many r's are in the word strawberry?",
    "Which weighs more, a kilogram of feathers or a kilogram of steel?",
    "A man has to cross a river with a wolf, a goat and a cabbage. His boat carries him and one item. How does he do it?",
    "I have 3 apples. I eat 2 bananas. How many apples do I have left?",
    "What is the 50th prime number?",
    "Write a sentence where every word starts with the letter s.",
)
_REASONING_TAILS = ("", " Think step by step.", " Let's think step by step.", " Explain your reasoning.",
                    " Show your work.")

#: Prompt templates that circulate in tutorials and blog posts; the payload is the user's own.
TUTORIAL_TEMPLATES: tuple[str, ...] = (
    "I want you to act as a {role}. My first request is: {payload}",
    "Act as an expert {role}. {payload}",
    "{payload}\n\nLet's think step by step.",
    "You are a helpful assistant. Answer the question below clearly and concisely.\n\nQuestion: {payload}",
    "Summarize the following text in 3 bullet points:\n\n{payload}",
    "Explain the following like I'm five: {payload}",
    "Rewrite the following to sound more professional:\n{payload}",
    "Improve this prompt so that an AI gives a better answer: {payload}",
    "{payload}\nRespond in JSON with the keys \"answer\" and \"explanation\".",
    "Context: {payload}\n\nTask: answer in a numbered list, then give a one-line summary.",
    "Pretend you are a world-class {role}. Be specific and practical. {payload}",
)
_ROLES = ("teacher", "software engineer", "career coach", "nutritionist", "travel guide", "copywriter",
          "data scientist", "lawyer", "personal trainer", "editor", "historian", "financial advisor")

_INTERVIEW_QUESTIONS: tuple[str, ...] = (
    "Given an array of integers, return the indices of the two numbers that add up to a target.",
    "Reverse a singly linked list in place.", "Design a URL shortener like bit.ly.",
    "What is the difference between a process and a thread?", "Explain how a hash map handles collisions.",
    "Find the longest substring without repeating characters.", "Design a rate limiter for an API.",
    "What happens when you type a URL into a browser and press enter?", "Merge k sorted linked lists.",
    "Explain the CAP theorem with an example.", "Implement an LRU cache.", "Design a chat application.",
    "Tell me about a time you disagreed with your manager.", "What are your greatest weaknesses?",
    "Detect a cycle in a linked list.", "Explain SQL joins with examples.", "Design Twitter's news feed.",
    "What is the time complexity of quicksort and why?", "Serialize and deserialize a binary tree.",
    "How would you find the median of a data stream?", "Explain eventual consistency.",
    "Why do you want to work here?", "Describe your most challenging project.",
    "Find the number of islands in a 2D grid.", "Explain dependency injection.",
)
_COURSE_TEMPLATES: tuple[str, ...] = (
    "[{course} · module {n}] {payload}",
    "Exercise {n} ({course}): {payload}\nAnswer using the framework from the lecture.",
    "Using the {course} prompt pattern, role: expert; task: {payload}; format: short paragraphs.",
    "{course} homework {n}. Question: {payload}",
)
_TEAM_TEMPLATES: tuple[str, ...] = (
    "You are the assistant for the {team} team at {company}. Follow our style guide and answer briefly.\n\n{payload}",
    "Internal use ({company}, {team}): {payload}\nKeep it under 150 words.",
    "[{company} {team} bot] {payload}",
)
_TEAMS = ("platform", "growth", "support", "finance", "research", "design", "sales", "data")


@dataclass(frozen=True)
class SharedTexts:
    """A pool of exact texts with cumulative weights."""

    texts: tuple[str, ...]
    cum_weights: tuple[float, ...]

    def draw(self, r: random.Random) -> str:
        return r.choices(self.texts, cum_weights=self.cum_weights)[0]


def _zipf(texts: list[str], r: random.Random) -> SharedTexts:
    r.shuffle(texts)
    texts = list(dict.fromkeys(texts))
    cum, total = [], 0.0
    for rank in range(1, len(texts) + 1):
        total += 1.0 / rank ** ZIPF_EXPONENT
        cum.append(total)
    return SharedTexts(tuple(texts), tuple(cum))


def _viral_prompt(r: random.Random) -> str:
    """A prompt of the week that spreads on social media (filled once per week, then pasted as is)."""
    _, c = G._concept(r)
    word = r.choice(("strawberry", "bookkeeper", "mississippi", "raspberry", "committee", made_up_word(r)))
    frames = (
        lambda: f"how many {r.choice('rseio')}'s are in the word {word}?",
        lambda: f"write a {r.choice(('poem', 'rap', 'sonnet', 'song'))} about {c} in the style of "
                f"{r.choice(('shakespeare', 'dr seuss', 'taylor swift', 'edgar allan poe', 'a pirate'))}",
        lambda: f"explain {c} like i'm five",
        lambda: f"what's the deal with {c}?",
        lambda: f"is {c} worth the hype?",
        lambda: f"give me a {r.randint(3, 7)}-day plan to learn {c}",
        lambda: f"roast me based on my love of {c}",
        lambda: f"what would happen if {c} disappeared tomorrow?",
        lambda: f"Let's think step by step. {G.math_problem(r)}",
        lambda: f"{G.math_problem(r)} Explain your reasoning.",
        lambda: f"summarize everything about {c} in one tweet",
    )
    return r.choice(frames)()


@lru_cache(maxsize=256)
def global_pool(seed: int, week: int, drift: float, release_week: int | None) -> SharedTexts:
    """The texts unrelated users share in `week`: evergreen one-liners, the week's viral prompts, and in
    the week a new model is released, the benchmark puzzles everybody tries on it."""
    r = G.PromptRandom(f"global-pool:{seed}:{week}", weekly_vocabulary(seed, week, drift))
    texts = list(EVERGREEN) + [_viral_prompt(r) for _ in range(60)]
    puzzles = [p + r.choice(_REASONING_TAILS) for p in BENCHMARK_PUZZLES]
    # puzzles circulate a little every week and a lot in the release week, where they lead the ranking
    if release_week is None or week != release_week:
        return _zipf(texts + puzzles[:3], r)
    pool = _zipf(texts, r)
    return SharedTexts(tuple(puzzles) + pool.texts, _prepend_heavy(pool.cum_weights, len(puzzles)))


def _prepend_heavy(cum: tuple[float, ...], n: int) -> tuple[float, ...]:
    """Cumulative weights with `n` entries in front, each as heavy as the current head."""
    head = cum[0]
    front = [head * (i + 1) for i in range(n)]
    return tuple(front) + tuple(c + front[-1] for c in cum)


def tutorial_template(r: random.Random, payload: str) -> str:
    """The user's own request inside one of the templates that circulate in tutorials."""
    return r.choice(TUTORIAL_TEMPLATES).format(role=r.choice(_ROLES), payload=payload)


# --- cohorts: a class, a bootcamp, a course, a team ---------------------------------------------

#: Cohort kinds with their (min, max) size and which archetypes join them with what probability.
COHORT_SIZES: dict[str, tuple[int, int]] = {"class": (8, 40), "interview": (10, 60), "course": (20, 150),
                                            "team": (3, 12)}
COHORT_MEMBERSHIP: dict[str, dict[str, float]] = {
    "student": {"class": 0.6, "course": 0.1},
    "developer": {"interview": 0.25, "team": 0.25, "course": 0.1},
    "professional": {"team": 0.35, "course": 0.15},
    "researcher": {"team": 0.3},
    "writer": {"course": 0.2},
    "casual": {"course": 0.08},
}


@lru_cache(maxsize=4096)
def cohort_texts(seed: int, kind: str, index: int, week: int, drift: float) -> SharedTexts:
    """The exact texts members of a cohort pass around in `week` (homework changes weekly;
    interview questions and course exercises stay)."""
    if kind == "class":
        r = G.PromptRandom(f"class:{seed}:{index}:{week}", weekly_vocabulary(seed, week, drift))
        _, c = G._concept(r)
        texts = [G.math_problem(r) for _ in range(r.randint(3, 6))]
        texts += [f"write a {r.choice((300, 500, 800))} word essay on {G._concept(r)[1]}",
                  f"explain {c} for my homework, question {r.randint(1, 12)}",
                  f"what are the main causes of {G._concept(r, 'history')[1]}?",
                  f"homework: {G.sentence(r)} true or false, and why?"]
        return _zipf(texts, r)
    r = random.Random(f"{kind}:{seed}:{index}")
    if kind == "interview":
        return _zipf(r.sample(_INTERVIEW_QUESTIONS, r.randint(8, 15)), r)
    if kind == "course":
        course = f"{made_up_word(r).capitalize()} {r.choice(('Academy', 'Prompting 101', 'Bootcamp', 'MOOC'))}"
        return _zipf([f"{course} exercise {n}: {G.student(r)}" for n in range(1, r.randint(6, 12))], r)
    # team: a document or question pasted around the team
    return _zipf([G.professional(r) for _ in range(r.randint(2, 5))], r)


@lru_cache(maxsize=4096)
def cohort_template(seed: int, kind: str, index: int) -> str | None:
    """The wrapper a course or a team puts around its members' own questions ({payload})."""
    r = random.Random(f"{kind}-template:{seed}:{index}")
    if kind == "course":
        course = f"{made_up_word(r).capitalize()} {r.choice(('Academy', 'Prompting 101', 'Bootcamp', 'MOOC'))}"
        return r.choice(_COURSE_TEMPLATES).replace("{course}", course).replace("{n}", str(r.randint(1, 9)))
    if kind == "team":
        return (r.choice(_TEAM_TEMPLATES).replace("{team}", r.choice(_TEAMS))
                .replace("{company}", r.choice(V.COMPANIES)))
    return None
