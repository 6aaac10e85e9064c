"""The Flower ClientApp: translates messages into calls of :class:`client.node.ClientNode`.

``app`` is what deployments run: the privacy audit, the error replies (:mod:`client.replies`: any exception leaves as
a code and a fixed reason, never its text), the unpacking of packed messages (checked by the guard first) and packing
of their replies (:mod:`client.packing`), then SecAgg+ when the server runs secure aggregation
(:mod:`client.secagg`: it hands the handlers below the same messages as a plain run), then DP clipping when the server
asks for it. Simulations that inject faults run :func:`build_app` with one more mod
(:mod:`lab.faults.client_app`); this module knows nothing of them.

What the server's run config may ask of this node is bounded (:func:`shared.config.check_number`, lowered by the
node config's ``cap-<key>`` keys), and so is every value of a message's config the handlers read (``proximal-mu``,
``server-round``, ``margin``, ``anchor``). A device (a node config with ``user-id``) takes ``data.dir``, ``data.split``,
``device.store-dir`` and ``llm.url`` from its own node config only: a server's run config never names a path or an
endpoint on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from client.audit import audit_mod
from client.guard import Guard
from client.node import (
    ClientNode,
    base_shapes,
    check_anchor,
    check_llm_calls,
    check_margin,
    is_free_node,
    make_llm,
    node_dataset,
    resolve_user,
    store_root,
)
from client.packing import make_packing_mod
from client.replies import error_mod
from client.secagg import secagg_mod
from shared.config import RunConfig, check_number, node_caps
from shared.errors import ConfigError
from shared.packing import array_view
from shared.protocol import (
    ANCHOR_KEY,
    ARRAYS_RECORD,
    ASK_KEY,
    ASK_MARGIN,
    CONFIG_RECORD,
    DP_WEIGHT_KEY,
    LLM_CALLS_KEY,
    MARGIN_KEY,
    MARGIN_RECORD,
    METHODS_ALL,
    METHODS_HYDRA,
    METHODS_KEY,
    METRICS_RECORD,
    ROLE_KEY,
    SERVER_ROUND_KEY,
    WEIGHT_KEY,
)

NODE_KEYS = ("data.dir", "data.split", "device.store-dir", "llm.url", "llm.model")
"""Run config keys a node's own config overrides."""
DEVICE_ONLY_KEYS = ("data.dir", "data.split", "device.store-dir", "llm.url")
"""Run config keys a device (``user-id`` in its node config) takes from its node config only, never from the run
config a server sent: paths and the endpoint its user's text goes to."""


def _dp_mod(msg: Message, ctx: Context, call_next) -> Message:
    """Flower's client-side clipping when the server asks for it (DP runs), else nothing."""
    config = msg.content.config_records.get(CONFIG_RECORD) if msg.has_content() else None
    if config is not None and KEY_CLIPPING_NORM in config:
        return fixedclipping_mod(msg, ctx, call_next)
    return call_next(msg, ctx)


def run_config(context: Context) -> RunConfig:
    """This node's run config: the server's run config with the node config's own keys over it (a device's paths and
    endpoint from its node config only), every value within its range and the node config's caps."""
    mapping = dict(context.run_config)
    if "user-id" in context.node_config:
        for key in DEVICE_ONLY_KEYS:
            mapping[key] = ""
    for key in NODE_KEYS:
        if key in context.node_config:
            mapping[key] = context.node_config[key]
    return RunConfig.from_mapping(mapping, complete=True, caps=node_caps(context.node_config))


def _node(context: Context) -> ClientNode:
    cfg = run_config(context)
    user, role = resolve_user(cfg, context.node_config)
    return ClientNode(cfg=cfg, user=user, role=role, llm=make_llm(cfg), free=is_free_node(cfg, context.node_config))


def node_guard(context: Context) -> Guard:
    """The guard of this node's user and base (:mod:`client.guard`), for checking a packed message before it is
    unpacked."""
    cfg = run_config(context)
    user, _ = resolve_user(cfg, context.node_config)
    return Guard(base_shapes(cfg.model), store_root(cfg), user.user_id, task=cfg.task)


packing_mod = make_packing_mod(node_guard)
"""The production packing mod: the node's guard checks a packed message before it is unpacked."""


def _metric_record(values: Mapping[str, float]) -> MetricRecord:
    """A metric record of ``values`` (Flower's constructor takes a dict of every metric value type; dicts are
    invariant)."""
    items: dict[str, int | float | list[int] | list[float]] = dict(values)
    return MetricRecord(items)


def _arrays(msg: Message) -> dict:
    """The message's tensors as read-only views of the bytes that came (no copy before the guard has checked them)."""
    return {k: array_view(v) for k, v in msg.content[ARRAYS_RECORD].items()}


def _config_number(config, key: str, setting: str, default: float, caps) -> float:
    """A number of a message's config (``key``), within the range of the run config key ``setting``."""
    return check_number(setting, config.get(key, default), caps)


def query(msg: Message, context: Context) -> Message:
    """The server asks this node's role, or (with the global base) its margin sums."""
    node = _node(context)
    if str(msg.content[CONFIG_RECORD].get(ASK_KEY, "")) == ASK_MARGIN:
        return Message(
            content=RecordDict({MARGIN_RECORD: _metric_record(node.margin_sums(_arrays(msg)))}), reply_to=msg
        )
    return Message(content=RecordDict({CONFIG_RECORD: ConfigRecord({ROLE_KEY: node.role.value})}), reply_to=msg)


def train(msg: Message, context: Context) -> Message:
    node = _node(context)
    config = msg.content[CONFIG_RECORD]
    caps = node_caps(context.node_config)
    server_round = config.get(SERVER_ROUND_KEY, 0)
    if isinstance(server_round, bool) or not isinstance(server_round, int) or not 0 <= server_round <= MAX_ROUND:
        raise ConfigError(f"message config key 'server-round' must be an integer in [0, {MAX_ROUND}]")
    mu = _config_number(config, "proximal-mu", "federation.proximal-mu", 0.0, caps)
    arrays, metrics = node.train(_arrays(msg), proximal_mu=mu, server_round=server_round)
    if KEY_CLIPPING_NORM in config:
        metrics[DP_WEIGHT_KEY] = 1
    # in the order the server sent (a resumed server's checkpoint has its keys sorted; Flower's DP clipping refuses
    # a reply in another order)
    sent = list(msg.content[ARRAYS_RECORD].keys())
    order = [k for k in sent if k in arrays] + [k for k in arrays if k not in sent]
    content = RecordDict(
        {ARRAYS_RECORD: ArrayRecord({k: Array(arrays[k]) for k in order}), METRICS_RECORD: _metric_record(metrics)}
    )
    return Message(content=content, reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    node = _node(context)
    config = msg.content[CONFIG_RECORD]
    methods = (
        (list(node.cfg.eval_methods) or None)
        if str(config.get(METHODS_KEY, METHODS_HYDRA)) == METHODS_ALL
        else [METHODS_HYDRA]
    )
    margin = check_margin(config[MARGIN_KEY]) if MARGIN_KEY in config else None
    anchor = check_anchor(config[ANCHOR_KEY], node.task) if ANCHOR_KEY in config else None
    llm_calls = check_llm_calls(config[LLM_CALLS_KEY], node.cfg.pool) if LLM_CALLS_KEY in config else None
    metrics = node.evaluate(
        _arrays(msg),
        methods=methods,
        golds=node_dataset(node.cfg).golds,
        margin=margin,
        anchor=anchor,
        llm_calls=llm_calls,
    )
    if not node.cfg.federation.report_metrics:
        metrics = {WEIGHT_KEY: metrics[WEIGHT_KEY]}
    return Message(content=RecordDict({METRICS_RECORD: _metric_record(metrics)}), reply_to=msg)


MAX_ROUND = 1_000_000
"""The largest ``server-round`` a training message may carry."""


def build_app(*mods) -> ClientApp:
    """A ClientApp with these handlers: ``audit_mod`` outermost (it records exactly what leaves the client), then
    ``error_mod`` (every exception leaves as a code and a fixed reason: the audit sees that reply), then the packing
    of tensors (:mod:`client.packing`: the server's packed messages are unpacked, the replies to them
    packed), then SecAgg+ (it masks what the inner ones return), then ``mods`` (none in production), then Flower's clipping when
    the server asks for DP (before masking, as DP with secure aggregation needs)."""
    client_app = ClientApp(mods=[audit_mod, error_mod, packing_mod, secagg_mod, *mods, _dp_mod])
    client_app.query()(query)
    client_app.train()(train)
    client_app.evaluate()(evaluate)
    return client_app


app = build_app()
