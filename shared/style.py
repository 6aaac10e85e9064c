"""Informal writing edits: the vocabulary of "writing quirks" that a user's history reveals.

A :class:`StyleRule` rewrites formal wording into an informal form ("you" -> "u", "I am" -> "I'm").
:func:`style_profile` measures, from a user's own texts, how often they use each rule's informal side
rather than its formal side; :func:`apply_rules` rewrites a text with a set of rules. The synthetic
generator plants quirks from this same table, and HYDRA's candidate pool for rewrite tasks includes the
input edited with the rules a user's history favours (see :mod:`shared.hydra.candidates`).

Example:
    >>> apply_rules("I am going to see you tomorrow", ["contractions", "u"])
    "I'm gonna see u tomorrow"
    >>> round(style_profile(["u rock", "see u", "you too"])["u"], 2)
    0.62
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

__all__ = ["StyleRule", "STYLE_RULES", "RULE_NAMES", "apply_rules", "style_profile", "favoured_rules", "signature"]


@dataclass(frozen=True)
class StyleRule:
    """Pairs of (formal, informal) phrases, matched as whole words, case-insensitively."""

    name: str
    pairs: tuple[tuple[str, str], ...]

    def apply(self, text: str) -> str:
        for formal, informal in self.pairs:
            text = re.sub(rf"(?<![\w']){re.escape(formal)}(?![\w'])", informal, text, flags=re.I)
        return text

    def counts(self, text: str) -> tuple[int, int]:
        """(formal uses, informal uses) in ``text``."""
        formal = sum(len(re.findall(rf"(?<![\w']){re.escape(f)}(?![\w'])", text, re.I)) for f, _ in self.pairs)
        informal = sum(len(re.findall(rf"(?<![\w']){re.escape(i)}(?![\w'])", text, re.I)) for _, i in self.pairs)
        return formal, informal


STYLE_RULES: tuple[StyleRule, ...] = (
    StyleRule("contractions", (
        ("I am", "I'm"), ("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"),
        ("cannot", "can't"), ("can not", "can't"), ("will not", "won't"), ("is not", "isn't"),
        ("are not", "aren't"), ("it is", "it's"), ("that is", "that's"), ("I will", "I'll"),
        ("I have", "I've"), ("you are", "you're"), ("we are", "we're"), ("they are", "they're"),
        ("going to", "gonna"), ("want to", "wanna"), ("have to", "gotta"),
    )),
    StyleRule("no-apostrophe", (("I'm", "im"), ("don't", "dont"), ("can't", "cant"), ("won't", "wont"),
                                ("it's", "its"), ("that's", "thats"), ("didn't", "didnt"), ("isn't", "isnt"))),
    StyleRule("u", (("you", "u"),)),
    StyleRule("ur", (("your", "ur"), ("you're", "ur"))),
    StyleRule("r", (("are", "r"),)),
    StyleRule("2", (("to", "2"), ("too", "2"))),
    StyleRule("4", (("for", "4"),)),
    StyleRule("cuz", (("because", "cuz"),)),
    StyleRule("luv", (("love", "luv"),)),
    StyleRule("pls", (("please", "pls"),)),
    StyleRule("tmrw", (("tomorrow", "tmrw"),)),
    StyleRule("thx", (("thank you", "thx"), ("thanks", "thx"))),
    StyleRule("ppl", (("people", "ppl"),)),
    StyleRule("b4", (("before", "b4"),)),
)
RULE_NAMES = tuple(rule.name for rule in STYLE_RULES)
_BY_NAME = {rule.name: rule for rule in STYLE_RULES}


def apply_rules(text: str, names: Iterable[str]) -> str:
    """Apply the named rules in table order (so "I am" -> "I'm" -> "im" chains)."""
    wanted = set(names)
    for rule in STYLE_RULES:
        if rule.name in wanted:
            text = rule.apply(text)
    return text


def style_profile(texts: Sequence[str], prior: float = 1.0) -> dict[str, float]:
    """Per rule, the smoothed share of informal uses: (informal + prior/2) / (formal + informal + prior)."""
    joined = "\n".join(texts)
    profile = {}
    for rule in STYLE_RULES:
        formal, informal = rule.counts(joined)
        profile[rule.name] = (informal + prior / 2) / (formal + informal + prior)
    return profile


def favoured_rules(profile: Mapping[str, float], threshold: float = 0.5) -> list[str]:
    """The rules a user uses more often than not."""
    return [name for name in RULE_NAMES if profile.get(name, 0.0) > threshold]


def signature(texts: Sequence[str], *, min_share: float = 0.3, min_count: int = 3) -> str | None:
    """The word a user ends their texts with ("lol", "xoxo"), if at least ``min_share`` of them do.

    >>> signature(["so fun lol", "ok lol", "bye lol", "hi there"])
    'lol'
    """
    ends = [t.split()[-1] for t in texts if t.split()]
    if not ends:
        return None
    word, count = max(((w, ends.count(w)) for w in set(ends)), key=lambda x: (x[1], x[0]))
    return word if count >= min_count and count / len(ends) >= min_share else None
