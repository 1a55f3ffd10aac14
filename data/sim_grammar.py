"""Prompt grammars of the traffic simulator: one generator per kind of request.

Each generator takes a `random.Random` and returns a prompt string. They are shared between
archetypes on purpose: students, eval runners and reasoning harvesters all ask math questions,
labelling teams and reward-model harvesters both grade answers. What separates harvesting from
organic use must be the *distribution* of an account's requests, not a word only one side uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from distillguard.data import sim_vocabulary as V
from distillguard.data.sim_drift import STATIC_VOCABULARY, Vocabulary

Grammar = Callable[[random.Random], str]


class PromptRandom(random.Random):
    """The random stream prompts are drawn from, carrying the vocabulary of the moment (the week's
    topic mix and new concepts). The simulator moves `vocabulary` as an account's time advances;
    a plain `random.Random` draws from the static vocabulary."""

    def __init__(self, seed: object = None, vocabulary: Vocabulary = STATIC_VOCABULARY) -> None:
        super().__init__(seed)
        self.vocabulary = vocabulary


def _concept(r: random.Random, domain: str | None = None) -> tuple[str, str]:
    vocab: Vocabulary = getattr(r, "vocabulary", STATIC_VOCABULARY)
    domain = domain or vocab.domain(r)
    return domain, vocab.concept(r, domain)


def sentence(r: random.Random) -> str:
    """One plausible expository sentence about a random concept."""
    domain, c = _concept(r)
    _, c2 = _concept(r, domain)
    frames = (
        lambda: f"{c.capitalize()} is often discussed together with {c2}.",
        lambda: f"Many people misunderstand how {c} relates to {c2}.",
        lambda: f"In {r.choice(V.CITIES).title()}, interest in {c} grew quickly over the last decade.",
        lambda: f"The main argument for {c} is that it makes {c2} easier to reason about.",
        lambda: f"Critics point out that {c} has limits that {c2} does not.",
        lambda: f"A {r.choice(V.ADJECTIVES)} way to think about {c} is as a special case of {c2}.",
        lambda: f"{r.choice(V.NAMES)} spent {r.randint(2, 30)} years studying {c} before turning to {c2}.",
        lambda: f"There is no consensus on whether {c} will matter more than {c2} in {r.randint(2030, 2060)}.",
        lambda: f"Most introductory courses cover {c} in the first {r.randint(2, 9)} weeks.",
        lambda: f"It is easy to overlook how much {c} depends on {c2}.",
    )
    return r.choice(frames)()


def paragraph(r: random.Random, n_min: int = 3, n_max: int = 8) -> str:
    return " ".join(sentence(r) for _ in range(r.randint(n_min, n_max)))


def code_snippet(r: random.Random) -> str:
    name = r.choice(V.IDENTIFIERS)
    fn = f"{r.choice(('load', 'parse', 'merge', 'update', 'compute', 'filter', 'sync'))}_{name}"
    lines = [f"def {fn}({name}, limit={r.randint(1, 500)}):",
             "    result = []",
             f"    for i, item in enumerate({name}):",
             "        if item is None or i > limit:",
             f"            {r.choice(('continue', 'break', 'return result'))}",
             "        result.append(item" + r.choice(("", ".strip()", "[0]", " * 2", '.get("id")')) + ")",
             "    return result"]
    return "\n".join(lines[: r.randint(4, len(lines))])


# --- everyday requests -----------------------------------------------------------------------

def casual(r: random.Random) -> str:
    domain, c = _concept(r)
    frames = (
        lambda: f"what's a good recipe for {_concept(r, 'cooking')[1]}",
        lambda: f"any tips for {_concept(r, 'travel')[1]}?",
        lambda: f"i'm {r.choice(V.MOODS)}, tell me something interesting about {c}",
        lambda: f"recommend a movie like {r.choice(('inception', 'amelie', 'the matrix', 'spirited away', 'heat'))}",
        lambda: f"is {r.choice(V.PRODUCTS)} worth buying",
        lambda: f"compare {r.choice(V.PRODUCTS)} and {r.choice(V.PRODUCTS)} for me",
        lambda: f"help me plan a birthday party for {r.choice(V.NAMES)}",
        lambda: f"write a funny text to send to {r.choice(V.NAMES)} about being late",
        lambda: f"what should i do this weekend in {r.choice(V.CITIES)}",
        lambda: f"why is {c} a thing?",
        lambda: f"hey! quick question about {c}",
        lambda: f"need a quick answer: is {c} related to {_concept(r, domain)[1]}?",
        lambda: f"how do i deal with {_concept(r, 'psychology')[1]}",
        lambda: f"give me {r.randint(3, 10)} ideas for {r.choice(('a date night', 'a rainy day', 'a team lunch', 'a gift'))}",
        lambda: f"translate 'where is the train station' into {r.choice(V.HUMAN_LANGUAGES)}",
        lambda: f"what's the difference between {c} and {_concept(r, domain)[1]}",
    )
    return r.choice(frames)()


def student(r: random.Random) -> str:
    domain, c = _concept(r)
    frames = (
        lambda: f"explain {c} in {r.choice(V.ADJECTIVES)} terms",
        lambda: f"can you help me understand {c} for my {domain} exam",
        lambda: f"what are the key points about {c} i should know for a test",
        lambda: f"write an outline for an essay on {c}",
        lambda: f"i don't get {c}. can you explain it step by step?",
        lambda: f"summarise this for my notes: {paragraph(r, 2, 4)}",
        lambda: f"give me {r.randint(3, 8)} practice questions on {c}",
        lambda: f"is this right? {sentence(r)}",
        lambda: math_problem(r),
        lambda: f"{math_problem(r)} please show how to solve it",
        lambda: f"what's the answer to this one: {math_problem(r)}",
        lambda: f"check my answer: {math_problem(r)} i got {r.randint(2, 99)}",
        lambda: f"what is the difference between {c} and {_concept(r, domain)[1]} in {domain}",
    )
    return r.choice(frames)()


def writer(r: random.Random) -> str:
    domain, c = _concept(r)
    frames = (
        lambda: f"write a short poem about {c}",
        lambda: f"help me edit this paragraph to sound more {r.choice(V.ADJECTIVES)}: {paragraph(r)}",
        lambda: f"brainstorm titles for a story about {r.choice(V.NAMES)} and {c}",
        lambda: f"continue this story: {r.choice(V.NAMES)} opened the door and saw {c}. {sentence(r)}",
        lambda: f"give me feedback on my opening line: '{sentence(r)}'",
        lambda: f"write a {r.choice(('limerick', 'haiku', 'sonnet', 'short scene', 'monologue'))} about {c}",
        lambda: f"describe {r.choice(V.CITIES)} at night in a {r.choice(V.ADJECTIVES)} voice",
        lambda: f"rewrite this in the style of a noir detective: {paragraph(r, 1, 3)}",
        lambda: f"what's a better word for '{r.choice(('very good', 'sad', 'walked', 'big', 'said'))}' in this sentence: {sentence(r)}",
    )
    return r.choice(frames)()


def developer(r: random.Random) -> str:
    lang = r.choice(V.LANGUAGES)
    _, c = _concept(r, "programming")
    frames = (
        lambda: f"how do i use {c}?",
        lambda: f"write a {lang} function that {r.choice(V.CODE_TASKS)}",
        lambda: f"why does this fail with {r.choice(V.CODE_ERRORS)}?\n{code_snippet(r)}",
        lambda: f"review this code please\n{code_snippet(r)}",
        lambda: f"what's the idiomatic way to {r.choice(V.CODE_TASKS)} in {lang}",
        lambda: f"explain {c} with an example",
        lambda: f"convert this to {lang}:\n{code_snippet(r)}",
        lambda: f"best practices for {c} in a large codebase?",
        lambda: f"my tests fail with {r.choice(V.CODE_ERRORS)}, any idea",
        lambda: f"write unit tests for this\n{code_snippet(r)}",
    )
    return r.choice(frames)()


def researcher(r: random.Random) -> str:
    domain, c = _concept(r)
    _, c2 = _concept(r, domain)
    frames = (
        lambda: f"summarise the main open questions about {c}",
        lambda: f"what are the limitations of current approaches to {c}?",
        lambda: f"compare {c} and {c2} as research directions in {domain}",
        lambda: f"suggest an experiment to test whether {c} affects {c2}",
        lambda: f"critique this abstract: {paragraph(r, 3, 6)}",
        lambda: f"what statistical test fits a study of {c} with {r.randint(20, 2000)} participants",
        lambda: f"draft a related work paragraph on {c}",
        lambda: f"explain the intuition behind {_concept(r, 'statistics')[1]} for a talk on {c}",
    )
    return r.choice(frames)()


def professional(r: random.Random) -> str:
    name = r.choice(V.NAMES)
    domain, c = _concept(r, r.choice(("careers", "marketing", "economics", "law", "personal finance")))
    frames = (
        lambda: f"draft an email to {name} about {c}",
        lambda: f"make this email more {r.choice(V.ADJECTIVES)}: {paragraph(r, 2, 4)}",
        lambda: f"write an agenda for a meeting on {c}",
        lambda: f"summarise this report in three bullet points: {paragraph(r, 4, 9)}",
        lambda: f"how should i prepare for {c}",
        lambda: f"create a slide outline about {c} for executives",
        lambda: f"write a linkedin post announcing {r.choice(V.PRODUCTS)} launch",
        lambda: f"what are the risks of {c} for a small business",
        lambda: f"turn these notes into minutes: {sentence(r)} {sentence(r)}",
    )
    return r.choice(frames)()


def follow_up(r: random.Random, previous: str) -> str:
    """A follow-up that refers back to the previous turn of the conversation."""
    words = [w for w in previous.split() if len(w) > 5]
    ref = r.choice(words).strip(".,?!:'\"") if words else "that"
    frames = (
        lambda: "can you make that shorter?",
        lambda: f"what did you mean by {ref}?",
        lambda: "thanks! can you give an example?",
        lambda: f"ok, and how does {ref} compare to the alternative?",
        lambda: "that's not quite what i meant, try again",
        lambda: "can you explain the second point in more detail",
        lambda: f"why {ref} though?",
        lambda: "now make it more formal",
        lambda: "great, what should i do next?",
        lambda: "can you put that in a table",
        lambda: f"you said {ref} earlier, is that always true?",
    )
    return r.choice(frames)()


# --- capabilities harvested by campaigns (and used honestly by some benign users) --------------

def math_problem(r: random.Random) -> str:
    a, b, c = r.randint(2, 90), r.randint(2, 60), r.randint(2, 12)
    frames = (
        lambda: f"A train leaves at {r.randint(1, 11)}:{r.choice(('00', '15', '30', '45'))} travelling at {a} km/h; "
        f"another leaves {c} hours later at {a + b} km/h. When does the second catch up?",
        lambda: f"{r.choice(V.NAMES)} is {a} years old, which is {c} times the age of her cousin {b % 7 + 1} years ago. "
        "How old is the cousin now?",
        lambda: f"What is the probability of drawing {c % 4 + 2} aces from a shuffled deck when drawing {c + 3} cards?",
        lambda: f"Find all real x such that {a}x^2 - {b}x + {c} = 0.",
        lambda: f"A rectangle has perimeter {2 * (a + b)} and area {a * b}. What are its side lengths?",
        lambda: f"How many ways can {c + 3} people sit around a round table if two of them refuse to sit together?",
        lambda: f"If ${a * 100} is invested at {c}% annual interest compounded monthly, what is it worth after {b % 20 + 1} years?",
        lambda: f"Prove that the sum of the first {a} odd numbers is a perfect square.",
        lambda: f"A bag has {a} red and {b} blue marbles. Two are drawn without replacement. What is P(both blue)?",
        lambda: f"Solve the system: {a}x + {b}y = {a + b}, {c}x - y = {c - 1}.",
        lambda: f"What is the remainder when {a}^{b} is divided by {c + 5}?",
        lambda: f"On an island, knights always tell the truth and knaves always lie. {r.choice(V.NAMES)} says "
        f"'{r.choice(V.NAMES)} and I are both knaves.' What is each of them?",
        lambda: f"Complete the sequence: {a}, {a + c}, {a + 3 * c}, {a + 6 * c}, ?",
        lambda: f"Five houses in a row are painted different colours. The {r.choice(('green', 'red', 'blue'))} house is "
        f"left of the white one and the owner of the {r.choice(('dog', 'cat', 'fish'))} lives in the middle. Who owns the zebra?",
        lambda: f"Integrate x^{c} * e^({b % 5 + 1}x) dx.",
        lambda: f"A tank fills in {c} hours with pipe A and {c + 2} hours with pipe B. How long with both?",
    )
    return r.choice(frames)()


def coding_task(r: random.Random) -> str:
    lang = r.choice(V.LANGUAGES)
    frames = (
        lambda: f"Write a {lang} function that {r.choice(V.CODE_TASKS)}.",
        lambda: f"Implement a {lang} class that {r.choice(V.CODE_TASKS)}, with tests.",
        lambda: f"The following code raises {r.choice(V.CODE_ERRORS)}. Fix it.\n{code_snippet(r)}",
        lambda: f"Refactor this {lang} code for readability and performance:\n{code_snippet(r)}",
        lambda: f"Optimise a solution that {r.choice(V.CODE_TASKS)} to run in O(n log n).",
    )
    return r.choice(frames)()


def agent_step(r: random.Random) -> str:
    """An agentic tool-use turn, as a coding agent or a harvester replaying agent traces sends it."""
    tools = r.sample(V.TOOLS, r.randint(3, 6))
    task = r.choice(V.CODE_TASKS)
    frames = (
        lambda: f"Tools available: {', '.join(tools)}. Task: add a function that {task}. "
        f"Previous tool output: {r.choice(V.CODE_ERRORS)}. Decide the next tool call.",
        lambda: f"You can call {', '.join(tools)}. The repository has src/{r.choice(V.IDENTIFIERS)}.py and tests/. "
        f"Goal: make the failing test pass ({r.choice(V.CODE_ERRORS)}). What do you do next?",
        lambda: f"[tool_result name={r.choice(tools)}]\n{code_snippet(r)}\n[/tool_result]\nContinue the task: {task}.",
        lambda: f"Plan the steps to implement a feature that {task} using these tools: {', '.join(tools)}.",
        lambda: f"The command `{r.choice(('pytest -x', 'npm test', 'cargo test', 'go test ./...'))}` printed "
        f"{r.choice(V.CODE_ERRORS)}. Propose a patch.",
    )
    return r.choice(frames)()


def answer_to_grade(r: random.Random) -> tuple[str, str]:
    """A question and a candidate answer, as graders (benign or not) paste them."""
    q = r.choice((math_problem(r), f"Explain {_concept(r)[1]}.", coding_task(r), casual(r)))
    return q, paragraph(r, 2, 6)


def review_text(r: random.Random) -> str:
    return f"{r.choice(V.PRODUCTS).capitalize()}: {r.choice(V.REVIEW_PHRASES)}, {r.choice(V.REVIEW_PHRASES)}."


def sensitive_question(r: random.Random) -> str:
    q = r.choice(V.SENSITIVE_QUESTIONS)
    frames = ("explain {q}", "i want to know {q}", "{q}?", "tell me in detail {q}",
              "for a story i'm writing, describe {q}", "what should people know about {q}")
    return r.choice(frames).format(q=q)


def trivia(r: random.Random) -> str:
    domain, c = _concept(r)
    frames = ("Who first described {c}?", "In one paragraph, what is {c}?",
              "Name three facts about {c}.", "When did {c} become important in {domain}?")
    return r.choice(frames).format(c=c, domain=domain)


def translation_task(r: random.Random) -> str:
    return f"Translate into {r.choice(V.HUMAN_LANGUAGES)}: {sentence(r)}"


def summary_task(r: random.Random) -> str:
    return f"Summarise the following text: {paragraph(r, 4, 10)}"


def eval_item(r: random.Random, fmt: str) -> str:
    """One benchmark item in a standard evaluation format (how eval runners hit the API)."""
    if fmt == "mcq":
        _, c = _concept(r)
        opts = [_concept(r)[1] for _ in range(4)]
        return (f"Question: Which of the following is most closely related to {c}?\n"
                f"A. {opts[0]}\nB. {opts[1]}\nC. {opts[2]}\nD. {opts[3]}\nAnswer:")
    if fmt == "cot_math":
        return f"Q: {math_problem(r)}\nA: Let's think step by step."
    if fmt == "code_eval":
        return f'def solution(x):\n    """{r.choice(V.CODE_TASKS).capitalize()}."""\n'
    if fmt == "qa_json":
        return f'{{"question": "{trivia(r)}", "instruction": "answer with a single short phrase"}}'
    return f"Passage: {paragraph(r, 2, 4)}\nQuestion: {trivia(r)}\nAnswer:"


EVAL_FORMATS: tuple[str, ...] = ("mcq", "cot_math", "code_eval", "qa_json", "reading")

ORGANIC_GRAMMARS: dict[str, Grammar] = {
    "casual": casual,
    "student": student,
    "writer": writer,
    "developer": developer,
    "researcher": researcher,
    "professional": professional,
}

#: Grammars that produce the *payload* a harvesting campaign of each capability focus wants answered.
CAPABILITY_PAYLOADS: dict[str, tuple[Grammar, ...]] = {
    "reasoning": (math_problem,),
    "agentic_coding": (agent_step, coding_task),
    "rubric_grading": (),  # composed in the campaign, needs question and answer together
    "safe_rewrite": (sensitive_question,),
    "capability_sweep": (math_problem, coding_task, trivia, translation_task, summary_task, writer,
                         researcher),
}


_ROLES = ("teacher", "nurse", "software engineer", "student", "small business owner", "parent", "data analyst",
          "product manager", "graduate student", "freelance designer", "retired engineer", "journalist")
_SITUATIONS = ("i'm preparing a presentation", "my team asked me to look into this", "i keep getting confused",
               "this came up at work today", "i have an exam next week", "a friend and i disagree about this",
               "i'm writing a blog post", "my manager wants a summary by friday", "i'm trying to learn on my own")

#: Ways real people ask for an explanation or a worked answer: harvesters are not the only ones.
ELABORATION_REQUESTS: tuple[str, ...] = (
    "Explain your reasoning.", "Show your work please.", "Can you think it through step by step?",
    "What's the answer? explain briefly", "Give me the final answer at the end.", "walk me through it",
    "please explain how you got there", "think carefully before answering", "be detailed, i want to understand",
    "answer in json please", "keep the answer short", "explain like i'm five",
)


def context_preamble(r: random.Random) -> str:
    """Background people give before their question: the reason organic prompts are often long."""
    head = f"I'm a {r.choice(_ROLES)} and {r.choice(_SITUATIONS)}."
    return head + (" " + paragraph(r, 1, 5) if r.random() < 0.6 else "")


def as_person_would(r: random.Random, prompt: str, p_context: float = 0.3, p_elaborate: float = 0.15) -> str:
    """Dress a prompt the way people do: some background first, sometimes a request to explain."""
    if r.random() < p_context:
        prompt = f"{context_preamble(r)} {prompt}"
    if r.random() < p_elaborate:
        prompt = f"{prompt} {r.choice(ELABORATION_REQUESTS)}"
    return prompt
