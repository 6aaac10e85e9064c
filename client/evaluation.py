"""Answering a user's questions the way a device does: through the SDK, with every method of a run.

Both the centralized reference (:mod:`simulations.hydra_run`) and the federated test clients
(:mod:`client.node`) evaluate with :func:`evaluate_user`, so the two differ only in how the shared base was
trained: heads are fitted on the device from the user's history (numpy, base frozen) and every HYDRA answer
goes through the SDK's answering path (:meth:`client.sdk.PersonalClient.answer`) and onnxruntime. The harness that
runs every method and counts what it cost is :func:`shared.evaluation.evaluate_users`.

What only an evaluation needs stays here, out of the SDK's public API: the client reads a bundle in place (one
read-only bundle shared by every user of a run, not copied into each store) and answers each question as of the
history the data gives it (replaying time-ordered data), not the stored one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from client.device_config import DeviceConfig
from client.sdk import PersonalClient
from client.store import UserStore
from shared.config import RunConfig
from shared.evaluation import Predictions, evaluate_users
from shared.hydra.context import UserContext
from shared.hydra.infer import Answer
from shared.llm.client import LLMClient
from shared.tasks import TaskSpec
from shared.users import User

__all__ = ["evaluate_user", "sdk_client", "device_config"]


class _EvaluationClient(PersonalClient):
    """The SDK client of an evaluation: on a shared bundle read in place, answering as of a given history."""

    def __init__(self, store: UserStore, bundle: Path, *, llm: LLMClient, task: TaskSpec, device: DeviceConfig):
        self._shared_bundle = Path(bundle)
        self._replay: tuple[tuple, UserContext] | None = None
        super().__init__(store, None, llm=llm, task=task, device=device)

    @property
    def bundle_dir(self) -> Path:
        """The run's bundle, read in place."""
        return self._shared_bundle

    def answer_as_of(self, input: str, history: Sequence[Mapping[str, str]], *, variant: str) -> Answer:
        """:meth:`answer`, as of ``history`` instead of the stored one."""
        return self._answer(input, lambda: self._replay_context(history), variant)

    def _replay_context(self, history: Sequence[Mapping[str, str]]) -> UserContext:
        """The context of a given history, kept while the same history is asked again (one per question)."""
        key = tuple((item.get("id"), self.task.item_text(item)) for item in history)
        if self._replay is None or self._replay[0] != key:
            self._replay = (key, UserContext.build(self.task, list(history), embed=self._embed))
        return self._replay[1]


def device_config(cfg: RunConfig) -> DeviceConfig:
    """The device knobs of a run's config: int8 or float encoders, retrieval and pool sizes, the onboarding's
    episodes and the head fit (the LLM is the run's own client)."""
    train = cfg.train
    return DeviceConfig(
        quantized=cfg.device_quantized,
        inference=cfg.inference,
        episodes=cfg.episodes,
        fit_steps=train.fit_steps,
        fit_lr=train.fit_lr,
        head_l2=train.head_l2,
    )


def sdk_client(
    task: TaskSpec, user_id: str, bundle: Path, cfg: RunConfig, llm: LLMClient, store_root: Path
) -> _EvaluationClient:
    """The user's SDK client on a shared, read-only bundle, configured like the run."""
    return _EvaluationClient(
        UserStore(store_root, user_id, task=task.name), bundle, llm=llm, task=task, device=device_config(cfg)
    )


def evaluate_user(
    task: TaskSpec,
    user: User,
    bundle: Path,
    cfg: RunConfig,
    llm: LLMClient,
    store_root: Path,
    golds: Mapping[str, str],
    *,
    methods: Sequence[str] | None = None,
) -> Predictions:
    """Fit the user's heads on the device and answer their questions with every method; returns Predictions.

    The user's history and episodes must already be in the store (``store_root/<user>``).
    """
    client = sdk_client(task, user.user_id, bundle, cfg, llm, store_root)
    client.fit()

    def hydra(u, q, ctx, *, variant: str):
        return client.answer_as_of(q.input, q.profile, variant=variant)

    return evaluate_users(task, [user], hydra, llm, cfg, golds, methods=methods, progress=False)
