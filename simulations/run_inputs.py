"""A run's inputs, checked before anything is written: ``fedhydra run`` and ``simulate`` refuse a bad value with
nothing left behind.

:func:`checked_inputs` builds the run config's dataset and checks the user split it asks for (training, test and
free users, the offset) against the users the data has. Synthetic users (empty ``data.dir``) are generated in a
temporary folder first; :meth:`RunInputs.place` moves them to ``<out>/data`` once every check passed. A refusal
(:class:`~shared.errors.ConfigError`, :class:`~shared.errors.DataFormatError`) leaves the output folder as it was.

Example:
    >>> import tempfile
    >>> from shared.config import RunConfig, default_mapping
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "data.dir": "", "data.task": "LaMP-3",
    ...                               "data.synthetic-users": 4, "data.train-users": 2, "data.test-users": 1})
    >>> out = Path(tempfile.mkdtemp())
    >>> with checked_inputs(cfg) as inputs:
    ...     before = list(out.iterdir())
    ...     folder = inputs.place(out)
    >>> before, folder == out / "data", len(inputs.dataset.users())
    ([], True, 4)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.config import RunConfig
from shared.data import Dataset
from shared.run_data import load_run_data
from shared.users import split_users

__all__ = ["RunInputs", "checked_inputs", "check_split"]


def check_split(cfg: RunConfig, dataset: Dataset) -> None:
    """Raise :class:`~shared.errors.ConfigError` when the data cannot give the users the config asks for."""
    split_users(
        dataset,
        train_users=cfg.train_users,
        test_users=cfg.test_users,
        protocol=cfg.protocol,
        offset=cfg.user_offset,
        free_train_users=cfg.free_train_users,
    )


@dataclass
class RunInputs:
    """The checked dataset; ``staged`` holds synthetic users not yet placed (None: the data is the config's)."""

    cfg: RunConfig
    dataset: Dataset
    folder: Path | None
    staged: Path | None

    def place(self, out: Path) -> Path:
        """The data folder the run reads: the configured one, or the synthetic users moved into ``out/data``."""
        if self.staged is None:
            assert self.folder is not None
            return self.folder
        target = Path(out) / "data"
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(self.staged.iterdir()):
            shutil.move(str(file), str(target / file.name))  # a rerun's files of the same name are replaced
        self.staged, self.folder = None, target
        return target


@contextmanager
def checked_inputs(cfg: RunConfig) -> Iterator[RunInputs]:
    """The run's dataset, checked; synthetic users wait in a temporary folder (removed on exit) until placed."""
    if cfg.data:
        dataset, folder = load_run_data(cfg)
        check_split(cfg, dataset)
        yield RunInputs(cfg, dataset, folder, None)
        return
    with tempfile.TemporaryDirectory(prefix="fedhydra-data-") as tmp:
        dataset, staged = load_run_data(cfg, synthetic_dir=Path(tmp) / "data")
        check_split(cfg, dataset)
        yield RunInputs(cfg, dataset, None, staged)
