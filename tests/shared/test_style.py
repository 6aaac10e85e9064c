"""The catalogue of informal rewrites (shared/style.py): each keeps meaning, matches whole words, deletes nothing."""

from __future__ import annotations

import re

import pytest

from shared.readability import is_broken
from shared.style import EMOTICON, RULE_NAMES, STYLE_RULES, StyleHabits, apply_rules, signature

_LITERAL = {
    "going to(?!": ("going to", "see "),
    "I have(?=": ("I have", "been "),
    "(?<!nna )": ("have to", ""),
    **{
        re.escape(p) + "(?=": (p, "here ")
        for p in ["I am", "it is", "that is", "I will", "you are", "we are", "they are"]
    },
}
"""The pattern rules ("going to" before a verb, ...): a literal form and what must follow it."""


def _formal_text(formal: str) -> tuple[str, str]:
    return next((text for start, text in _LITERAL.items() if formal.startswith(start)), (formal, ""))


def _pairs():
    return [(rule, *_formal_text(f), i) for rule in STYLE_RULES for f, i in rule.pairs]


def test_the_catalogue_grew_and_names_are_unique():
    assert len(STYLE_RULES) >= 60 and len(set(RULE_NAMES)) == len(RULE_NAMES)
    for name in ["w/", "abt", "rly", "wat", "wut", "ok", "gud", "lil", "sth", "prob", "tmr", "&", "c", "b", "y"]:
        assert name in RULE_NAMES
    assert {"goin", "nothin", "doin"} <= {i for rule in STYLE_RULES for _, i in rule.pairs}
    assert "y'all" in RULE_NAMES


@pytest.mark.parametrize(
    ("rule", "formal", "after", "informal"), _pairs(), ids=lambda x: getattr(x, "name", str(x).strip() or "-")
)
def test_each_pair_round_trips_and_leaves_every_other_word(rule, formal, after, informal):
    """ "zebra <formal> quartz" -> "zebra <informal> quartz": the words around stay, and mapping the informal side
    back gives the text again (nothing deleted, the meaning kept)."""
    text = f"zebra {formal} {after}quartz"
    styled = rule.apply(text)
    assert styled == f"zebra {informal} {after}quartz"
    assert re.sub(rf"(?<![\w']){re.escape(informal)}(?![\w'])", formal, styled) == text
    assert rule.counts(text) == (1, 0) and rule.counts(styled)[1] >= 1
    assert not is_broken(styled, text), styled


@pytest.mark.parametrize("rule", STYLE_RULES, ids=lambda r: r.name)
def test_rules_match_whole_words_only(rule):
    for formal, _ in rule.pairs:
        word, after = _formal_text(formal)
        for glued in (f"x{word}", f"{word}x", f"{word}'s"):
            assert rule.apply(f"zebra {glued} {after}quartz") == f"zebra {glued} {after}quartz", glued


def test_the_pattern_rules_leave_what_would_not_read():
    contract = next(rule for rule in STYLE_RULES if rule.name == "contractions")
    for text in ["I have a question", "you will have to see", "going to the beach"]:
        assert contract.apply(text) == text, text
    assert contract.apply("we are going to have to wait") == "we're gonna have to wait"
    assert contract.apply("I have been to the beach, I have to go") == "I've been to the beach, I gotta go"


def test_the_whole_catalogue_keeps_sentences_whole():
    for text in [
        "To be honest, I am going to see you all tomorrow with something good, because I really love you.",
        "Why do you think it is okay? I have been doing nothing about it, probably.",
        "Thank you, I do not know what you are doing. See you later, my little friend!",
        "By the way, right now I am looking at the pictures of my boyfriend and his favorite video.",
    ]:
        styled = apply_rules(text, RULE_NAMES)
        assert styled != text and not is_broken(styled, text), styled
        assert len(re.findall(r"[.!?]", styled)) == len(re.findall(r"[.!?]", text))


def test_case_of_a_capital_first_letter_is_kept_except_on_one_letter_forms():
    assert apply_rules("They are here. It's fine. You rock.", ["contractions", "no-apostrophe", "u"]) == (
        "They're here. Its fine. u rock."
    )


def test_emoticon_sign_offs():
    assert all(EMOTICON.match(e) for e in [":)", ":-D", ";P", "<3", "^_^", "xD", "\U0001f602"])
    assert not any(EMOTICON.match(e) for e in ["ok", "x", "3", "lol", "(me)"])
    assert signature(["great day <3", "love it <3", "hi <3", "so good"]) == "<3"  # one emoticon: the plain rule
    assert (
        signature(["yay :)", "ok :D", "fine :)", *["hm", "no", "what", "rain", "sun", "cold", "snow", "end"]]) is None
    )  # 3 of 11
    texts = ["Fun :)", "Ok :D", "Bye :)", "Yay <3", "Hi :D", "No", "Rain", "Sun", "Cold", "Snow"]
    assert signature(texts, min_count=3) == ":D"  # no face 3 times, but faces end half the texts: the usual one
    assert StyleHabits.of(texts).apply("See you tomorrow", sign=True) == "See you tomorrow :D"


@pytest.mark.parametrize(
    "text",
    ["Here you are, it is a bit untidy.", "It is crazy how widespread it is.", "I know who they are", "Yes I am!"],
)
def test_a_subject_and_its_verb_contract_only_before_a_word(text):
    out = apply_rules(text, ["contractions", "no-apostrophe", "ur"])
    assert not re.search(r"\b(?:you're|ur|it's|its|they're|im|I'm)\s*(?:[.,!?]|$)", out), out
    assert apply_rules("you are here and it is late", ["contractions"]) == "you're here and it's late"
