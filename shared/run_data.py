"""A run's dataset, from its configuration: the one place ``data.dir``, ``data.task``, ``data.split`` and
``data.timeline-questions`` become a :class:`~shared.data.Dataset`.

``data.dir`` names a LaMP-format directory (:func:`shared.data.load_split` with the configured split; ``data.split =
"timeline"`` builds the time-based split). Empty ``data.dir`` means synthetic users (``data.synthetic-users`` of
``data.synthetic-items`` items, seeded by ``run.seed``: :func:`shared.synthetic.write_synthetic`), written under the
folder the caller names; a caller that names none (a federated node, whose data is its own) gets a
:class:`~shared.errors.ConfigError`.

Used by ``fedhydra run`` and ``simulate`` (:mod:`simulations.cli`, :mod:`simulations.federated`) and by the
federated node (:func:`client.node.node_dataset`).

Example:
    >>> import tempfile
    >>> from shared.config import RunConfig, default_mapping
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "data.dir": "", "data.task": "LaMP-3",
    ...                               "data.synthetic-users": 3})
    >>> dataset, folder = load_run_data(cfg, synthetic_dir=Path(tempfile.mkdtemp()) / "data")
    >>> len(dataset.users()), folder.name
    (3, 'data')
"""

from __future__ import annotations

from pathlib import Path

from shared.config import RunConfig
from shared.data import Dataset, load_split
from shared.errors import ConfigError

__all__ = ["load_run_data"]


def load_run_data(cfg: RunConfig, *, synthetic_dir: Path | None = None) -> tuple[Dataset, Path]:
    """The configured dataset and the folder it was read from (see the module docstring).

    Raises:
        ConfigError: ``data.dir`` is empty and no ``synthetic_dir`` is given.
        DataFormatError: the files do not follow the LaMP layout.
    """
    if cfg.data:
        folder = Path(cfg.data)
        return load_split(folder, cfg.task, cfg.split or None, timeline_questions=cfg.timeline_questions), folder
    if synthetic_dir is None:
        raise ConfigError("no `data` (a LaMP-format directory) in the run config, and no folder for synthetic users")
    from shared.synthetic import write_synthetic

    folder = write_synthetic(
        synthetic_dir, cfg.task, n_users=cfg.synthetic_users, items_per_user=cfg.synthetic_items, seed=cfg.seed
    )
    return load_split(folder, cfg.task), folder
