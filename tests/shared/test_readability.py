from __future__ import annotations

import json

import numpy as np
import pytest

from shared.data import load_split
from shared.hydra.editor import f1_optimal_keep
from shared.readability import broken_reason, broken_share, droppable_words, is_broken
from shared.style import RULE_NAMES, StyleHabits

# the issue's broken answers, with inputs of the kind LaMP-7 gives
BROKEN = [
    (
        "@KGMB9, Your of technology is excellent, and I your channel as example of good practices.",
        "@KGMB9, Your coverage of technology is excellent, and I use your channel as an example of good practices.",
    ),
    ("My is and now we can print Haha, cool!", "My printer is fixed and now we can print again. Haha, cool!"),
    (
        "I'm my blog's SEO through tagging and my allergies would subside so I can outdoor activities.",
        "I'm improving my blog's SEO through tagging and hope my allergies would subside so I can enjoy outdoor "
        "activities.",
    ),
    ("In I a writer. no, no, no, no...", "In my dreams I am a famous writer. no, no, no, no..."),
    (
        "I'm so excited to finally to the concert tomorrow night with my best",
        "I'm so excited to finally go to the concert tomorrow night with my best friends.",
    ),
    ("I love so much, what a game", "I love #Lakers so much, what a game"),  # a tag that is one of the words
]

READABLE = [
    ("im so excited 2 see u tmrw", "I'm so excited to see you tomorrow."),
    ("sorry to inform u, but ur account is private", "Sorry to inform you, but your account is private."),
    ("The weather is beautiful, but I have to work.", "The weather is beautiful, but unfortunately I have to work."),
    ("so tired today lol", "I am so tired today lol"),
    ("Great game!", "Great game! I will see you all tomorrow at the usual place."),
    ("thanks for the tip", "@bob thanks for the tip"),
    ("great game tonight", "great game tonight #Lakers #fb"),  # trailing tags
    ("hugs n kisses to all of u x", "Sending everyone my love and hugs."),  # no edit of the input: its end decides
]


@pytest.mark.parametrize("answer,source", BROKEN)
def test_the_issues_broken_answers_are_broken(answer, source):
    assert is_broken(answer, source)


@pytest.mark.parametrize("answer,source", READABLE)
def test_style_edits_filler_drops_whole_sentences_and_paraphrases_are_readable(answer, source):
    assert broken_reason(answer, source) is None


def test_reasons_and_the_share():
    assert broken_reason("", "hi there") == "empty"
    assert broken_reason("I'm going to the", "I'm going to the concert tonight") == "dangling"
    assert broken_reason("off to the", None) == "dangling" and broken_reason("off to bed", None) is None
    assert broken_reason("what are you up to", "what are you up to") is None  # the input's own ending
    assert broken_share(["a b", "a"], ["a b", "a b"]) == 0.5 and broken_share([], []) == 0.0


def test_every_style_rule_and_habit_keeps_a_sentence_whole():
    habits = StyleHabits(rules=RULE_NAMES, lower_first=True, drop_period=True, signature="xoxo")
    for text in [
        "I am going to see you tomorrow because I love you.",
        "Thank you, I do not know what you are doing.",
        "By the way, are you coming tonight? I have to work though.",
        "Oh my god, it is your birthday!",
    ]:
        styled = habits.apply(text, sign=True)
        assert styled != text and not is_broken(styled, text), styled


def test_droppable_words_are_fillers_mentions_and_adverbs_only():
    words = ["@bob", "I", "really", "love", '"@ann', 'the"', "show,", "unfortunately", "it", "ends"]
    assert droppable_words(words) == [True, False, True, False, False, False, False, True, False, False]
    # a tag between words of its sentence is one of them; at either end of it, it goes
    words = ["@amy", "I", "thanked", "the", "#FF", "guys", "today.", "#fb"]
    assert droppable_words(words) == [True, False, False, False, False, False, False, True]


def test_the_editor_dropping_fillers_only_never_breaks_real_inputs(lamp_data):
    """Over 300 real LaMP-7 inputs: the old editor (any word) breaks most of them; held to fillers it breaks none,
    by the same check."""
    ds = load_split(lamp_data / "lamp7", "LaMP-7")
    questions = ds.questions[:300]
    rng = np.random.default_rng(0)
    free, held = [], []
    for q in questions:
        words = q.query.split()
        p = rng.uniform(0, 1, len(words))  # keep probabilities of an editor that wants to delete
        free.append(f1_optimal_keep(words, p, 0.6 * len(words)))
        held.append(f1_optimal_keep(words, np.where(droppable_words(words), p, 1.0), 0.6 * len(words)))
    inputs = [q.query for q in questions]
    assert broken_share(free, inputs) > 0.5
    assert broken_share(held, inputs) <= 0.01
    assert sum(h != i for h, i in zip(held, inputs)) > 30  # it did edit


def test_the_hand_labels_are_well_formed_and_the_check_agrees_with_them():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "labels" / "lamp7-readability.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    assert len(rows) >= 300 and {r["label"] for r in rows} == {"readable", "broken"}
    assert len({(r["method"], r["qid"]) for r in rows}) == len(rows)
    check = [is_broken(r["answer"], r["input"]) for r in rows]
    label = [r["label"] == "broken" for r in rows]
    tp = sum(c and lab for c, lab in zip(check, label))
    assert tp / max(1, sum(check)) >= 0.7 and tp / max(1, sum(label)) >= 0.85  # docs/lab-notebook.md gives the figures
