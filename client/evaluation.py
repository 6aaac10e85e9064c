"""Answering a user's questions the way a device does: through the SDK, with every method of a run.

Both the centralized reference (:mod:`simulations.hydra_run`) and the federated test clients
(:mod:`client.node`) evaluate with :func:`evaluate_user`, so the two differ only in how the shared base was
trained: heads are fitted on the device from the user's history (numpy, base frozen) and every HYDRA answer
goes through :meth:`client.sdk.PersonalClient.answer` and onnxruntime. The harness that runs every method and
counts what it cost is :func:`shared.evaluation.evaluate_users`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from client.sdk import PersonalClient
from shared.config import RunConfig
from shared.evaluation import Predictions, evaluate_users
from shared.llm.client import LLMClient
from shared.tasks import TaskSpec
from shared.users import User

__all__ = ["evaluate_user", "sdk_client"]


def sdk_client(task: TaskSpec, user_id: str, bundle: Path, cfg: RunConfig, llm: LLMClient,
               store_root: Path) -> PersonalClient:
    """The user's SDK client on a shared, read-only bundle, configured like the run."""
    train = cfg.train
    return PersonalClient(store_root, task=task, user=user_id, llm=llm, bundle=bundle, bundle_in_place=True,
                          quantized=cfg.device_quantized, inference=cfg.inference, episodes=cfg.episodes,
                          fit_steps=train.fit_steps, fit_lr=train.fit_lr, head_l2=train.head_l2)


def evaluate_user(task: TaskSpec, user: User, bundle: Path, cfg: RunConfig, llm: LLMClient, store_root: Path,
                  golds: Mapping[str, str], *, methods: Sequence[str] | None = None) -> Predictions:
    """Fit the user's heads on the device and answer their questions with every method; returns Predictions.

    The user's history and episodes must already be in the store (``store_root/<user>``).
    """
    client = sdk_client(task, user.user_id, bundle, cfg, llm, store_root)
    client.fit()

    def hydra(u, q, ctx, *, variant: str):
        return client.answer(q.input, variant=variant, history=q.profile)

    return evaluate_users(task, [user], hydra, llm, cfg, golds, methods=methods, progress=False)
