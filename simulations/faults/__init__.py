"""Fault injection: the tools of the reliability tests and of ``scripts/fault_injection.py``, kept out of the
production apps.

| module | what |
|---|---|
| :mod:`simulations.faults.mod` | the ClientApp mod that makes chosen clients fail or send bad updates (``FEDHYDRA_FAULTS``) |
| :mod:`simulations.faults.client_app` | the production ClientApp with that mod added: what a simulation runs when ``FEDHYDRA_FAULTS`` is set |
| :mod:`simulations.faults.store` | a store writer SIGKILLed at random, and the check that every file is at one version |
| :mod:`simulations.faults.poison` | one poisoned client in ten against validation and robust aggregation (no simulation) |

The misbehaving LLM endpoint these runs talk to is :class:`shared.llm.faulty_stub.StubLLM`.
"""

__all__ = ["CLIENT_APP"]

CLIENT_APP = "simulations.faults.client_app:app"
"""The fault-injection ClientApp as a Flower component reference (``[tool.flwr.app.components]``)."""
