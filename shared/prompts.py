"""Chat prompts for the black-box LLM: zero-shot, and retrieval-augmented in two styles.

- ``turns`` (HYDRA's format, the default): each retrieved record is an earlier chat exchange, the user
  turn being the record's own question (a pseudo-question built by the task registry, or "Write a
  tweet." for LaMP-7) and the assistant turn its answer; the most relevant record comes last, right
  before the real question.
- ``inline`` (the official LaMP format): one user message listing the records, e.g.
  ``5 is the score for "...", and 4 is the score for "...". <input>``.

Budgets are in characters (about 4 per token for English): each record and the input are cut at a
word boundary so that a 4-record prompt fits SmolLM2's 2,048-token context.

Example:
    >>> from shared.tasks import get_task
    >>> t = get_task("LaMP-3")
    >>> msgs = build_messages(t, t.instruction + "great", [{"text": "ok book", "score": "3"}])
    >>> [m["role"] for m in msgs]
    ['user', 'assistant', 'user']
    >>> msgs[1]["content"]
    '3'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.errors import ConfigError
from shared.tasks import TaskSpec

__all__ = ["PromptBudget", "build_messages", "truncate", "PROMPT_STYLES"]

PROMPT_STYLES = ("turns", "inline")


@dataclass(frozen=True)
class PromptBudget:
    """Character budgets of one prompt."""

    record_chars: int = 600
    input_chars: int = 2000


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary (adds nothing).

    >>> truncate("one two three", 8)
    'one two'
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip()


def _inline_record(task: TaskSpec, item: Mapping[str, str], budget: PromptBudget) -> str:
    question, answer = task.demonstration(item)
    body = truncate(
        question[len(task.instruction) :] if question.startswith(task.instruction) else question, budget.record_chars
    )
    if task.rewrite or task.item_input is None:
        return f'"{truncate(task.item_text(item), budget.record_chars)}"'
    return f'"{answer}" is the answer for "{body}"'


def build_messages(
    task: TaskSpec,
    input_text: str,
    records: Sequence[Mapping[str, str]] = (),
    *,
    style: str = "turns",
    budget: PromptBudget = PromptBudget(),
) -> list[dict[str, str]]:
    """Chat messages asking the LLM to answer ``input_text``, with ``records`` (best first) as context."""
    if style not in PROMPT_STYLES:
        raise ConfigError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    question = truncate(input_text, budget.input_chars)
    if not records:
        return [{"role": "user", "content": question}]
    if style == "inline":
        listed = ", and ".join(_inline_record(task, r, budget) for r in records)
        lead = "are written by this person" if task.rewrite else "are this person's past answers"
        return [{"role": "user", "content": f"{listed} {lead}. Following the given patterns, {question}"}]
    messages: list[dict[str, str]] = []
    for item in reversed(records):  # the best record sits right before the question
        user, assistant = task.demonstration(item)
        messages.append({"role": "user", "content": truncate(user, budget.record_chars + len(task.instruction))})
        messages.append({"role": "assistant", "content": truncate(assistant, budget.record_chars)})
    messages.append({"role": "user", "content": question})
    return messages
