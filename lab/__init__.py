"""The lab: instruments for experiments and tests, never shipped.

What a deployment or a device runs lives in ``server/``, ``client/`` and ``shared/`` (and the ``fedhydra`` command in
``simulations/``); the lab holds what only measures or breaks them: fault injection (:mod:`lab.faults`), the scale
harness (:mod:`lab.scale`) and the stub LLM endpoints (:mod:`lab.llm_stub`, a deterministic one for measuring the
system apart from the LLM, and :mod:`lab.faulty_llm_stub`, one that misbehaves on purpose), and the small runs that
tests and scripts share (:mod:`lab.small_runs`). It sits on top, as
``scripts/`` does: it may import the product and ``simulations/``, and only ``scripts/`` and ``tests/`` import it
(``tests/test_import_direction.py``). Neither the Flower app bundle (``fab-include``) nor the wheel
(``[tool.setuptools.packages.find]``) carries it (``tests/test_fab.py``); a run that needs a lab ClientApp submits
a copy of the app that adds it (:func:`lab.faults.app.fault_app`, :func:`lab.scale.app.scale_app`).
"""

__all__ = ["LAB_CODE"]

LAB_CODE = ("lab/**/*.py",)
"""What of the lab a lab app copy bundles besides the product's code (``fab-include`` patterns): its modules."""
