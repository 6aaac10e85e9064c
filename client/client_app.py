"""The Flower ClientApp: translates messages into calls of :class:`client.node.ClientNode`.

``app`` is what deployments run: the privacy audit, the unpacking of packed messages and packing of their replies
(:mod:`client.packing`), then SecAgg+ when the server runs secure aggregation
(:mod:`client.secagg`: it hands the handlers below the same messages as a plain run), then DP clipping when the server
asks for it. Simulations that inject faults run :func:`build_app` with one more mod
(:mod:`simulations.faults.client_app`); this module knows nothing of them.
"""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from client.audit import audit_mod
from client.node import ClientNode, is_free_node, make_llm, node_dataset, resolve_user
from client.packing import packing_mod
from client.secagg import secagg_mod
from shared.config import RunConfig
from shared.protocol import (WEIGHT_KEY, ANCHOR_KEY, ASK_KEY, ASK_MARGIN, DP_WEIGHT_KEY, MARGIN_KEY, MARGIN_RECORD,
                             ROLE_KEY)


def _dp_mod(msg: Message, ctx: Context, call_next) -> Message:
    """Flower's client-side clipping when the server asks for it (DP runs), else nothing."""
    config = msg.content.config_records.get("config") if msg.has_content() else None
    if config is not None and KEY_CLIPPING_NORM in config:
        return fixedclipping_mod(msg, ctx, call_next)
    return call_next(msg, ctx)


def _node(context: Context) -> ClientNode:
    mapping = dict(context.run_config)
    for key in ("data", "split", "store-dir", "llm-url", "llm-model"):
        if key in context.node_config:
            mapping[key] = context.node_config[key]
    cfg = RunConfig.from_mapping(mapping, complete=True)
    user, role = resolve_user(cfg, context.node_config)
    return ClientNode(cfg=cfg, user=user, role=role, llm=make_llm(cfg), free=is_free_node(cfg, context.node_config))


def _arrays(msg: Message) -> dict:
    return {k: v.numpy() for k, v in msg.content["arrays"].items()}


def query(msg: Message, context: Context) -> Message:
    """The server asks this node's role, or (with the global base) its margin sums."""
    node = _node(context)
    if str(msg.content["config"].get(ASK_KEY, "")) == ASK_MARGIN:
        return Message(content=RecordDict({MARGIN_RECORD: MetricRecord(node.margin_sums(_arrays(msg)))}),
                       reply_to=msg)
    return Message(content=RecordDict({"config": ConfigRecord({ROLE_KEY: node.role.value})}), reply_to=msg)


def train(msg: Message, context: Context) -> Message:
    node = _node(context)
    config = msg.content["config"]
    arrays, metrics = node.train(_arrays(msg), proximal_mu=float(config.get("proximal-mu", 0.0)),
                                 server_round=int(config.get("server-round", 0)))
    if KEY_CLIPPING_NORM in config:
        metrics[DP_WEIGHT_KEY] = 1
    # in the order the server sent (a resumed server's checkpoint has its keys sorted; Flower's DP clipping refuses
    # a reply in another order)
    sent = list(msg.content["arrays"].keys())
    order = [k for k in sent if k in arrays] + [k for k in arrays if k not in sent]
    content = RecordDict({"arrays": ArrayRecord({k: Array(arrays[k]) for k in order}),
                          "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    node = _node(context)
    config = msg.content["config"]
    methods = (list(node.cfg.eval_methods) or None) if str(config.get("methods", "hydra")) == "all" else ["hydra"]
    margin = float(config[MARGIN_KEY]) if MARGIN_KEY in config else None
    anchor = str(config[ANCHOR_KEY]) if ANCHOR_KEY in config else None
    metrics = node.evaluate(_arrays(msg), methods=methods, golds=node_dataset(node.cfg).golds, margin=margin,
                            anchor=anchor)
    if not node.cfg.federation.report_metrics:
        metrics = {WEIGHT_KEY: metrics[WEIGHT_KEY]}
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


def build_app(*mods) -> ClientApp:
    """A ClientApp with these handlers: ``audit_mod`` outermost (it records exactly what leaves the client), then
    the packing of tensors (:mod:`client.packing`: the server's packed messages are unpacked, the replies to them
    packed), then SecAgg+ (it masks what the inner ones return), then ``mods`` (none in production), then Flower's clipping when
    the server asks for DP (before masking, as DP with secure aggregation needs)."""
    client_app = ClientApp(mods=[audit_mod, packing_mod, secagg_mod, *mods, _dp_mod])
    client_app.query()(query)
    client_app.train()(train)
    client_app.evaluate()(evaluate)
    return client_app


app = build_app()
