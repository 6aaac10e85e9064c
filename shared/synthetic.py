"""A deterministic, seeded generator of LaMP-format users with planted personal structure.

It is FedHydra's embedded default (runs need no download), the data of scale runs and of fast tests.
Two task shapes:

**Rating (LaMP-3 layout).** A review is about a topic (books, kitchen, ...) and carries a latent quality
``q`` in 1..5 that its wording reveals (sentiment phrases shared by everyone, right with probability
``clarity``). Each user has a *bias* (-1 harsh, 0, +1 generous) and likes one topic (+1) and dislikes
another (-1). The score is ``clip(q + bias + taste[topic], 1, 5)``; a third of the users are *steady*:
unless the product is terrible, 80% of their scores are their habitual score (4 or 5) whatever the text
says. Retrieval can find same-topic reviews; a personal model can learn the bias, the tastes and how much
this user's score follows the text from the user's history alone.

**Rewrite (LaMP-7 layout).** A tweet is a formal sentence from templates about the user's favourite
topics. Each user has a set of writing quirks drawn from :data:`shared.style.STYLE_RULES` ("you" -> "u",
contractions, ...), may write in lowercase and may end tweets with a signature ("lol", ":)"). The
question's input is the formal sentence; the gold is that sentence in the user's style; the history
holds other tweets in the same style. A personal model can learn which quirks a user has.

``structure.json`` beside the data records every user's planted parameters, so tests can check that a
model learned them.

Example:
    >>> qs, outs, truth = generate("LaMP-3", n_users=2, items_per_user=6, seed=1)
    >>> len(qs), len(outs["golds"]), sorted(truth["users"][qs[0]["user_id"]])
    (2, 2, ['bias', 'dislikes', 'habit', 'likes', 'steadiness'])
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.io import atomic_write_text
from shared.style import apply_rules
from shared.tasks import TaskSpec, get_task

__all__ = ["generate", "write_synthetic", "SYNTHETIC_TASKS"]

TOPICS = {
    "books": ["novel", "story", "author", "plot", "ending", "characters"],
    "kitchen": ["blender", "pan", "knife", "coffee maker", "toaster", "kettle"],
    "music": ["album", "song", "band", "lyrics", "concert", "guitar"],
    "games": ["game", "level", "controller", "graphics", "boss fight", "multiplayer"],
    "garden": ["hose", "seeds", "shovel", "planter", "lawn mower", "roses"],
    "travel": ["suitcase", "hotel", "flight", "backpack", "beach", "road trip"],
}
SENTIMENT = {
    1: ["terrible", "a complete waste of money", "broken and useless", "the worst I have ever had"],
    2: ["disappointing", "below average", "not worth it", "poorly made"],
    3: ["okay", "average at best", "fine but forgettable", "neither good nor bad"],
    4: ["good", "really nice", "solid and reliable", "better than expected"],
    5: ["excellent", "absolutely wonderful", "perfect in every way", "the best I have ever had"],
}
RATING_TEMPLATES = [
    "The {noun} was {sent}.",
    "I bought this {noun} last month and it is {sent}.",
    "Honestly, the {noun} is {sent}. {extra}",
    "{extra} Overall the {noun} turned out {sent}.",
    "My family tried the {noun}; we found it {sent}.",
]
EXTRAS = [
    "Shipping was quick.",
    "It arrived on time.",
    "I read other reviews first.",
    "The price was fair.",
    "It came in a nice box.",
    "I will keep using it.",
]
TWEET_TEMPLATES = [
    "I am going to the {place} tomorrow because I love {thing}.",
    "Thank you for the {thing}, you are the best and I love you.",
    "I do not want to leave the {place} before the {event}, please wait for me.",
    "Are you coming to the {event} with your friends tomorrow?",
    "Please tell me you are watching {thing} tonight because I am.",
    "I cannot believe people are still talking about the {event}, thanks for the laugh.",
    "It is too late for {thing}, I am going to sleep before you.",
    "I have to finish my work before the {event}, thanks for waiting for me.",
    "Do not forget your {thing} for the {event} tomorrow, you are going to need it.",
    "I will love you forever because {thing} at the {place} was perfect.",
    "Are you going to the {place} because of the {event}? Please tell your people.",
    "I am so happy for you, the {event} was great and people love you.",
]
TWEET_TOPICS = {
    "music": {
        "place": ["concert hall", "studio", "record store"],
        "thing": ["new album", "guitar", "that song"],
        "event": ["concert", "festival", "album release"],
    },
    "sports": {
        "place": ["stadium", "gym", "field"],
        "thing": ["the game", "new shoes", "my team"],
        "event": ["match", "final", "race"],
    },
    "food": {
        "place": ["bakery", "diner", "kitchen"],
        "thing": ["pizza", "chocolate cake", "coffee"],
        "event": ["dinner", "barbecue", "brunch"],
    },
    "school": {
        "place": ["library", "classroom", "campus"],
        "thing": ["homework", "my notes", "the exam"],
        "event": ["exam", "graduation", "lecture"],
    },
    "movies": {
        "place": ["cinema", "couch", "theater"],
        "thing": ["the new movie", "popcorn", "the trailer"],
        "event": ["premiere", "movie night", "marathon"],
    },
}
SIGNATURES = ["lol", ":)", "xoxo", "!!", "haha"]
QUIRKABLE = ["contractions", "u", "ur", "r", "2", "4", "cuz", "luv", "pls", "tmrw", "thx", "ppl", "b4"]
"""The quirks a synthetic user may have (fixed, so the synthetic users stay the same as the rule table grows)."""


def _rating_user(rng: random.Random, uid: str, n_items: int, clarity: float) -> tuple[dict, list[dict]]:
    topics = list(TOPICS)
    likes, dislikes = rng.sample(topics, 2)
    truth: dict[str, Any] = {
        "bias": rng.choice([-1, 0, 0, 1]),
        "likes": likes,
        "dislikes": dislikes,
        "habit": rng.choice([4, 5, 5]),
        "steadiness": rng.choice([0.0, 0.0, 0.8]),
    }
    items = []
    for j in range(n_items):
        topic = rng.choice(topics + [likes, likes])  # users write more about what they like
        quality = rng.randint(1, 5)
        shown = quality if rng.random() < clarity else min(5, max(1, quality + rng.choice([-1, 1])))
        text = (
            rng.choice(RATING_TEMPLATES)
            .format(noun=rng.choice(TOPICS[topic]), sent=rng.choice(SENTIMENT[shown]), extra=rng.choice(EXTRAS))
            .strip()
        )
        taste = 1 if topic == likes else -1 if topic == dislikes else 0
        score = min(5, max(1, quality + truth["bias"] + taste))
        if quality > 1 and rng.random() < truth["steadiness"]:  # a steady user gives their usual score
            score = truth["habit"]
        items.append({"id": f"{uid}_h{j}", "text": text, "score": str(score), "topic": topic})
    return truth, items


def _tweet(rng: random.Random, topic: str) -> str:
    slots = {k: rng.choice(v) for k, v in TWEET_TOPICS[topic].items()}
    return rng.choice(TWEET_TEMPLATES).format(**slots)


def _styled(text: str, truth: dict, rng: random.Random) -> str:
    out = apply_rules(text, truth["quirks"])
    if truth["lowercase"]:
        out = out.lower()
    if truth["signature"] and rng.random() < 0.9:
        out = f"{out.rstrip('.')} {truth['signature']}"
    return out


def _rewrite_user(rng: random.Random, uid: str, n_items: int) -> tuple[dict, list[dict], str]:
    quirks = sorted(rng.sample(QUIRKABLE, rng.randint(2, 6)))
    if "contractions" in quirks and rng.random() < 0.5:
        quirks.append("no-apostrophe")
    truth: dict[str, Any] = {
        "quirks": sorted(quirks),
        "lowercase": rng.random() < 0.5,
        "signature": rng.choice(SIGNATURES + [""] * 5),
        "topics": rng.sample(list(TWEET_TOPICS), 2),
    }
    items = [
        {"id": f"{uid}_h{j}", "text": _styled(_tweet(rng, rng.choice(truth["topics"])), truth, rng)}
        for j in range(n_items)
    ]
    return truth, items, _tweet(rng, rng.choice(truth["topics"]))


Generated = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]
"""One synthetic user: (planted truth, questions, golds)."""


def _rating_questions(
    rng: random.Random, uid: str, spec: TaskSpec, items_per_user: int, questions_per_user: int, clarity: float
) -> Generated:
    truth, items = _rating_user(rng, uid, items_per_user + questions_per_user, clarity)
    history, asked = items[:items_per_user], items[items_per_user:]
    questions, golds = [], []
    for k, item in enumerate(asked):
        questions.append(
            {
                "id": f"{uid}_q{k}",
                "user_id": uid,
                "input": spec.instruction + item["text"],
                "profile": [{f: h[f] for f in ("id", "text", "score")} for h in history],
            }
        )
        golds.append({"id": f"{uid}_q{k}", "output": item["score"]})
    return truth, questions, golds


def _rewrite_questions(
    rng: random.Random, uid: str, spec: TaskSpec, items_per_user: int, questions_per_user: int, clarity: float
) -> Generated:
    truth, history, _ = _rewrite_user(rng, uid, items_per_user)
    questions, golds = [], []
    for k in range(questions_per_user):
        formal = _tweet(rng, rng.choice(truth["topics"]))
        questions.append({"id": f"{uid}_q{k}", "user_id": uid, "input": spec.instruction + formal, "profile": history})
        golds.append({"id": f"{uid}_q{k}", "output": _styled(formal, truth, rng)})
    return truth, questions, golds


_GENERATORS: dict[str, Callable[[random.Random, str, TaskSpec, int, int, float], Generated]] = {
    "LaMP-3": _rating_questions,
    "LaMP-7": _rewrite_questions,
}
"""How each synthetic task makes one user: ``fn(rng, user_id, spec, items_per_user, questions_per_user, clarity)``
(``clarity`` only rating users use)."""

SYNTHETIC_TASKS = tuple(_GENERATORS)
"""The tasks with synthetic data."""


def generate(
    task: str,
    *,
    n_users: int,
    items_per_user: int = 30,
    questions_per_user: int = 1,
    seed: int = 0,
    clarity: float = 0.8,
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Questions, outputs (official layouts) and the planted structure, all determined by ``seed``.

    Each user gets ``items_per_user`` history items; each of their questions uses that history as its
    profile (for ratings, question ``i`` is scored like the history, its profile is the whole history).

    Raises:
        ConfigError: unsupported task or non-positive sizes.
    """
    spec = get_task(task)
    if spec.name not in SYNTHETIC_TASKS:
        raise ConfigError(f"synthetic data exists for {', '.join(SYNTHETIC_TASKS)}, not {spec.name}")
    if n_users < 1 or items_per_user < 1 or questions_per_user < 1:
        raise ConfigError("n_users, items_per_user and questions_per_user must be >= 1")
    rng = random.Random(f"fedhydra-synthetic:{spec.name}:{seed}")
    make_user = _GENERATORS[spec.name]
    questions: list[dict[str, Any]] = []
    golds: list[dict[str, str]] = []
    users: dict[str, Any] = {}
    for u in range(n_users):
        uid = f"s{seed}u{u:04d}"
        truth, user_questions, user_golds = make_user(rng, uid, spec, items_per_user, questions_per_user, clarity)
        questions += user_questions
        golds += user_golds
        users[uid] = truth
    structure = {"task": spec.name, "seed": seed, "users": users, "description": __doc__.split("Example:")[0].strip()}
    return questions, {"task": spec.official_id, "golds": golds}, structure


def write_synthetic(
    out_dir: str | Path,
    task: str,
    *,
    n_users: int,
    items_per_user: int = 30,
    questions_per_user: int = 1,
    seed: int = 0,
    split: str = "synthetic",
) -> Path:
    """Write ``{split}_questions.json``, ``{split}_outputs.json`` and ``structure.json`` into ``out_dir``."""
    questions, outputs, structure = generate(
        task, n_users=n_users, items_per_user=items_per_user, questions_per_user=questions_per_user, seed=seed
    )
    out = Path(out_dir)
    atomic_write_text(out / f"{split}_questions.json", json.dumps(questions, ensure_ascii=False))
    atomic_write_text(out / f"{split}_outputs.json", json.dumps(outputs, ensure_ascii=False))
    atomic_write_text(out / "structure.json", json.dumps(structure, indent=1))
    return out
