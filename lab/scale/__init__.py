"""Scale measurements (issue 16): what a federated round costs as the federation and the sampled clients grow, on
one machine, on a multi-node Ray cluster, and in a deployment of many SuperNodes. Kept out of the production apps.

| module | what |
|---|---|
| :mod:`lab.scale.probe` | a ClientApp mod that records, per message, where it ran (host, pid, Ray node), its seconds (episodes and LLM apart), its tensor and serialized bytes in and out, and the process's memory, in the folder a run names (``scale_app(out, probe_dir)``) |
| :mod:`lab.scale.client_app` | the production ClientApp with that mod added: what the scale runs submit |
| :mod:`lab.scale.memory` | a sampler of the memory of every process of a run (a process tree, Ray workers included) |
| :mod:`lab.scale.app` | the Flower app folder a scale run submits (the repository's code, naming that ClientApp) |
| :mod:`lab.scale.ray_cluster` | a Ray head and Ray workers as separate Ray nodes on this machine, stopped by pid |
| :mod:`lab.scale.bench` | one measured federation: a simulation of training rounds with the probe and the sampler, and the per-round figures drawn from its files |
| :mod:`lab.scale.relay` | a byte-counting TCP relay: what a SuperNode sends and receives on the wire |

The scripts are ``scripts/fed_scale.py`` (rounds against federation size and sampled clients),
``scripts/ray_cluster_sim.py`` (a simulation on a two-node Ray cluster) and ``scripts/supernodes.py`` (many
SuperNodes as separate processes).
"""

__all__ = ["CLIENT_APP"]

CLIENT_APP = "lab.scale.client_app:app"
"""The probed ClientApp as a Flower component reference (``[tool.flwr.app.components]``)."""
