from __future__ import annotations

import pytest

from shared.errors import UnknownTaskError
from shared.tasks import MOVIE_TAGS, NEWS_CATEGORIES, TASKS, TaskKind, get_task, task_names


def test_registry_covers_every_lamp_task():
    assert task_names() == ["LaMP-1", "LaMP-2", "LaMP-2N", "LaMP-3", "LaMP-4", "LaMP-5", "LaMP-6", "LaMP-7"]
    kinds = {name: spec.kind for name, spec in TASKS.items()}
    assert kinds["LaMP-3"] is TaskKind.RATING
    assert [n for n, k in kinds.items() if k is TaskKind.CLASSIFICATION] == ["LaMP-1", "LaMP-2", "LaMP-2N"]


@pytest.mark.parametrize(
    "alias,name",
    [
        ("LaMP_7", "LaMP-7"),
        ("lamp7", "LaMP-7"),
        ("LAMP-3", "LaMP-3"),
        ("lamp-2-old", "LaMP-2N"),
        ("LaMP_2", "LaMP-2"),
        (" lamp5 ", "LaMP-5"),
    ],
)
def test_aliases(alias, name):
    assert get_task(alias).name == name


def test_unknown_task_names_the_value_and_the_known_ones():
    with pytest.raises(UnknownTaskError) as err:
        get_task("LaMP-9")
    assert "LaMP-9" in str(err.value) and "LaMP-7" in str(err.value)


def test_official_label_sets():
    assert get_task("LaMP-1").labels == ("[1]", "[2]")
    assert get_task("LaMP-3").labels == ("1", "2", "3", "4", "5")
    assert len(MOVIE_TAGS) == len(NEWS_CATEGORIES) == 15
    assert MOVIE_TAGS[0] == "sci-fi" and NEWS_CATEGORIES[-1] == "healthy living"


@pytest.mark.parametrize(
    "task,text,query",
    [
        (
            "LaMP-1",
            'For an author who has written the paper with the title "A", which reference is related? '
            'Just answer with [1] or [2] without explanation. [1]: "B one" [2]: "C two"',
            "B one C two",
        ),
        ("LaMP-2", "Which tag ... tags: [comedy] description: A man walks.", "A man walks."),
        ("LaMP-2N", "Which category ... categories: [sports] article: Team wins.", "Team wins."),
        ("LaMP-3", "What is the score ... review: Loved it", "Loved it"),
        ("LaMP-4", "Generate a headline for the following article: Big news today", "Big news today"),
        ("LaMP-5", "Generate a title for the following abstract of a paper: We study X", "We study X"),
        ("LaMP-6", "Generate a subject for the following email: Meeting at 5", "Meeting at 5"),
        ("LaMP-7", "Paraphrase the following tweet without any explanation before or after it: @bob: hi", "@bob: hi"),
    ],
)
def test_query_extraction_matches_the_official_helpers(task, text, query):
    assert get_task(task).extract_query(text) == query


def test_missing_marker_falls_back_to_the_whole_input():
    assert get_task("LaMP-3").extract_query("  no marker here ") == "no marker here"


@pytest.mark.parametrize(
    "task,raw,parsed",
    [
        ("LaMP-3", "4", "4"),
        ("LaMP-3", "Score: 5 stars", "5"),
        ("LaMP-3", "I'd give it 3.0", "3"),
        ("LaMP-3", "ten out of ten", "ten out of ten"),
        ("LaMP-3", "15", "15"),
        ("LaMP-2N", "Sports", "sports"),
        ("LaMP-2N", "The category is: science & technology.", "science & technology"),
        ("LaMP-2", "dark comedy", "dark comedy"),
        ("LaMP-1", "[2]", "[2]"),
        ("LaMP-1", "I think [1].", "[1]"),
        ("LaMP-7", '"hello there"', "hello there"),
        ("LaMP-7", "Paraphrased tweet: hi\nExplanation: none", "hi"),
    ],
)
def test_parse_answer(task, raw, parsed):
    assert get_task(task).parse_answer(raw) == parsed


def test_pseudo_questions_and_demonstrations():
    t3 = get_task("LaMP-3")
    assert t3.pseudo_question({"text": "meh", "score": "2"}) == (t3.instruction + "meh", "2")
    assert t3.extract_query(t3.pseudo_question({"text": "meh", "score": "2"})[0]) == "meh"
    t7 = get_task("LaMP-7")
    assert t7.pseudo_question({"text": "yo"}) is None
    assert t7.demonstration({"text": "yo"}) == ("Write a tweet.", "yo")
    t4 = get_task("LaMP-4")
    assert t4.pseudo_question({"title": "T", "text": "body"}) == (t4.instruction + "body", "T")
