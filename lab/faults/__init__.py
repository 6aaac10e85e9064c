"""Fault injection: the tools of the reliability tests and of ``scripts/fault_injection.py``, kept out of the
production apps.

| module | what |
|---|---|
| :mod:`lab.faults.mod` | the ClientApp mod that makes chosen clients fail or send bad updates (:class:`lab.faults.mod.FaultsMod`) |
| :mod:`lab.faults.client_app` | the production ClientApp with that mod added, its faults read from the app copy it runs in |
| :mod:`lab.faults.app` | the app a fault-injection simulation submits: ``simulate(..., app=fault_app(faults))`` |
| :mod:`lab.faults.store` | a store writer SIGKILLed at random, and the check that every file is at one version |
| :mod:`lab.faults.poison` | one poisoned client in ten against validation and robust aggregation (no simulation) |

The misbehaving LLM endpoint these runs talk to is :class:`lab.faulty_llm_stub.StubLLM`.
"""

__all__ = ["CLIENT_APP"]

CLIENT_APP = "lab.faults.client_app:app"
"""The fault-injection ClientApp as a Flower component reference (``[tool.flwr.app.components]``)."""
