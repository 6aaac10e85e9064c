"""The ways HYDRA can answer, as a registry: which parts are on and how many LLM answers a question may ask.

The SDK answers with a variant's name, the runs evaluate the variants they list, and the reports group them;
none of them tests flags or names of its own: whether a method is a HYDRA variant or a baseline is
:func:`is_hydra_method` (a federated run's reports name a variant ``fed-<variant>``, :data:`FEDERATED_PREFIX`).

| variant | reranker | adapter | heads | LLM answers asked per question |
|---|---|---|---|---|
| ``hydra`` | yes | yes | personal | greedy + ``pool.n-samples`` samples |
| ``hydra-no-margin`` | yes | yes, without the margin rule | personal | greedy + samples |
| ``hydra-shared-head`` | yes | yes | shared | greedy + samples |
| ``hydra-adapter`` | BM25 order | yes | personal | greedy + samples |
| ``hydra-reranker`` | yes | no (the greedy answer) | personal | greedy |
| ``hydra-calls-0`` | yes | yes | personal | none: only candidates that cost no call |
| ``hydra-calls-1`` | yes | yes | personal | greedy |
| ``hydra-calls-2`` | yes | yes | personal | greedy + 1 sample |
| ``hydra-stable`` | yes | yes | personal | one at a time until the choice stops changing |

``hydra-stable`` asks the greedy answer and then one sample at a time, and stops as soon as a new answer
leaves the adapter's choice where it was (the choice without any LLM answer counts as the first one): at
least one call, at most the full pool's. Every cost variant asks a prefix of the full pool's requests (same
prompt, same seeds), so in a run that also evaluates ``hydra`` they are cache hits.

Every variant with the adapter keeps the strongest non-LLM answer unless the adapter's predicted advantage
passes the bundle's margin (:mod:`shared.hydra.decision`), except ``hydra-no-margin``, which shows what the
rule adds (it asks what ``hydra`` asks: cache hits).

Example:
    >>> get_variant("hydra-calls-1").llm_calls, get_variant("hydra").personal
    (1, True)
    >>> [v for v in VARIANTS if VARIANTS[v].cost_only][:2]
    ['hydra-calls-0', 'hydra-calls-1']
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigError

__all__ = ["Variant", "VARIANTS", "get_variant", "is_hydra_method", "HYDRA_METHODS", "COST_METHODS", "FEDERATED_PREFIX"]


@dataclass(frozen=True)
class Variant:
    """Which parts of HYDRA answer, and how many LLM answers one question may ask (None: the whole pool)."""

    name: str
    reranker: bool = True
    adapter: bool = True
    personal: bool = True
    llm_calls: int | None = None
    stable: bool = False
    margin: bool = True
    """The margin rule applies (the adapter leaves the strongest non-LLM answer only past the bundle's margin)."""
    cost_only: bool = False
    """A variant of ``hydra`` that differs only in the LLM answers it asks (the quality/cost trade-off)."""
    oracle: bool = False
    """The candidate pool's oracle (its best candidate by the gold, read after answering) is taken from this variant's
    pools: the full method's (:func:`shared.evaluation.evaluate_users`)."""


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("hydra-reranker", adapter=False),
        Variant("hydra-adapter", reranker=False),
        Variant("hydra-shared-head", personal=False),
        Variant("hydra", oracle=True),
        Variant("hydra-no-margin", margin=False),
        Variant("hydra-calls-0", llm_calls=0, cost_only=True),
        Variant("hydra-calls-1", llm_calls=1, cost_only=True),
        Variant("hydra-calls-2", llm_calls=2, cost_only=True),
        Variant("hydra-stable", stable=True, cost_only=True),
    )
}

HYDRA_METHODS = tuple(name for name, v in VARIANTS.items() if not v.cost_only)
"""The ablation: what each part adds."""
COST_METHODS = tuple(name for name, v in VARIANTS.items() if v.cost_only)
"""The quality/cost trade-off of the full method."""
FEDERATED_PREFIX = "fed-"
"""How a federated run's reports name a variant (``fed-hydra``), beside the centralized reference's (``hydra``)."""


def is_hydra_method(name: str) -> bool:
    """Whether a method named in predictions, metrics or a report is a HYDRA variant, also as a federated run's
    reports name it (``fed-hydra-calls-1``); every other method is a baseline.

    >>> [is_hydra_method(m) for m in ("hydra-stable", "fed-hydra", "rag-k4", "user-mean", "hydrant")]
    [True, True, False, False, False]
    """
    if name.startswith(FEDERATED_PREFIX):
        name = name[len(FEDERATED_PREFIX) :]
    return name in VARIANTS


def get_variant(name: str | Variant) -> Variant:
    """The registered variant of this name (a Variant passes through).

    Raises:
        ConfigError: no variant has this name.
    """
    if isinstance(name, Variant):
        return name
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown HYDRA variant {name!r}; known: {', '.join(VARIANTS)}") from None
