from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.prompts import PromptBudget, build_messages, truncate
from shared.tasks import get_task


def test_zero_shot_is_the_official_input_alone():
    t = get_task("LaMP-7")
    assert build_messages(t, t.instruction + "hello") == [{"role": "user", "content": t.instruction + "hello"}]


def test_turns_put_records_as_earlier_exchanges_best_last():
    t = get_task("LaMP-3")
    records = [{"text": "best match", "score": "5"}, {"text": "second", "score": "2"}]
    msgs = build_messages(t, t.instruction + "query", records, style="turns")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"].endswith("second") and msgs[1]["content"] == "2"
    assert msgs[2]["content"].endswith("best match") and msgs[3]["content"] == "5"
    assert msgs[-1]["content"] == t.instruction + "query"


def test_rewrite_records_become_written_tweets():
    t = get_task("LaMP-7")
    msgs = build_messages(t, t.instruction + "x", [{"text": "my tweet"}])
    assert msgs[:2] == [{"role": "user", "content": "Write a tweet."}, {"role": "assistant", "content": "my tweet"}]


def test_inline_style_lists_records_in_one_message():
    t = get_task("LaMP-3")
    msgs = build_messages(
        t, t.instruction + "q", [{"text": "nice", "score": "4"}, {"text": "bad", "score": "1"}], style="inline"
    )
    assert len(msgs) == 1
    assert '"4" is the answer for "nice", and "1" is the answer for "bad"' in msgs[0]["content"]
    with pytest.raises(ConfigError, match="prompt style"):
        build_messages(t, "q", [{"text": "a", "score": "1"}], style="nope")


def test_budgets_cut_records_and_input():
    t = get_task("LaMP-3")
    long = "word " * 1000
    msgs = build_messages(
        t, t.instruction + long, [{"text": long, "score": "3"}], budget=PromptBudget(record_chars=100, input_chars=300)
    )
    assert len(msgs[0]["content"]) <= 100 + len(t.instruction)
    assert len(msgs[-1]["content"]) <= 300
    assert truncate("abc def", 100) == "abc def" and truncate("abcdefgh", 4) == "abcd"
