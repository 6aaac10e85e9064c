"""Property-based tests (hypothesis) of what a packed message can make a device allocate (issue 28, probe 1): for any
layout and flat arrays a server may send, the client's packing mod (client/packing.py, with the device's guard)
either refuses the message before a handler runs, or hands the handler tensors that fit this device's base; and
what it allocates on the way stays within 2x the base's bytes (as tracemalloc counts Python's and numpy's
allocations), whatever the layout names."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.guard import ACCEPTED_DTYPES, Guard, base_budget
from client.packing import make_packing_mod
from shared.errors import PackingError, UnsafeBase
from shared.packing import FORMAT, LAYOUT_RECORD, PACKED_RECORD

pytestmark = pytest.mark.usefixtures("flower_task_identity")

SPEC = {"base.a": (16, 8), "base.b": (8,), "base.c": (4, 4)}
BUDGET = base_budget(SPEC)
BASE_BYTES = 4 * sum(math.prod(s) for s in SPEC.values())
mod = make_packing_mod(lambda ctx: Guard(SPEC, "/nonexistent/fedhydra-store", "u", task="LaMP-3"))

keys = st.sampled_from([*SPEC, "base.x", "head.a", "base.a"])
dtypes = st.sampled_from([*ACCEPTED_DTYPES, "int64", "float16", "bool", "nonsense"])
dims = st.one_of(st.integers(0, 20), st.sampled_from([16, 8, 4, 10**6, 2**40]))


@st.composite
def layouts(draw):
    """A layout that may or may not describe its flat arrays: tensors drawn from the base's keys and others, any
    dtype, any shape, ``same-as`` entries pointing anywhere (many names for one tensor), a few ``sent``."""
    n = draw(st.one_of(st.integers(0, 6), st.sampled_from([50, 500])))
    ndims = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    flat_sizes = draw(
        st.dictionaries(st.sampled_from(["float32", "float64", "int64"]), st.integers(0, 4000), max_size=2)
    )
    layout = {
        "format": draw(st.sampled_from([FORMAT, FORMAT, 2])),
        "records": draw(st.sampled_from([["arrays"], ["arrays", "fitins.parameters"], []])),
        "record-of": draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
        "keys": [draw(keys) if i < 8 else f"base.k{i}" for i in range(n)],
        "dtypes": draw(st.lists(dtypes, min_size=n, max_size=n)),
        "ndims": ndims,
        "dims": draw(st.lists(dims, min_size=sum(ndims), max_size=sum(ndims))),
        "same-as": [draw(st.integers(0, max(i, 0))) for i in range(n)],
        "sent": draw(
            st.lists(st.integers(0, 1).filter(lambda v: draw(st.booleans()) or v == 0), min_size=n, max_size=n)
        ),
    }
    flat = {d: np.ones(size, np.dtype(d)) for d, size in flat_sizes.items()}
    return layout, flat


def _message(layout: dict, flat: dict) -> Message:
    content = RecordDict(
        {
            PACKED_RECORD: ArrayRecord({d: Array(v) for d, v in flat.items()}),
            LAYOUT_RECORD: ConfigRecord(layout),
            "config": ConfigRecord({"server-round": 1}),
        }
    )
    return Message(content=content, dst_node_id=1, message_type="train")


@pytest.mark.slow  # 150 generated layouts through the ClientApp: about 17 s on 2 cores
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_any_layout_is_refused_before_a_handler_or_fits_the_base_and_costs_at_most_2x_its_bytes(case):
    layout, flat = case
    msg = _message(layout, flat)
    seen = []

    def handler(m, ctx):
        seen.append(
            {name: {k: v.numpy() for k, v in record.items()} for name, record in m.content.array_records.items()}
        )
        return Message(RecordDict(), reply_to=m)

    tracemalloc.start()
    try:
        mod(msg, None, handler)
    except (UnsafeBase, PackingError):
        assert not seen  # refused: no handler ran
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 2 * BASE_BYTES + 64 * 1024, f"peak {peak:,} for a base of {BASE_BYTES:,}"
    for records in seen:  # let through: the base's keys and shapes (SecAgg+'s record: its shapes), within the budget
        if "arrays" in records:
            assert {k: v.shape for k, v in records["arrays"].items()} == SPEC
        assert all(v.shape in SPEC.values() for tensors in records.values() for v in tensors.values())
        assert sum(v.nbytes for tensors in records.values() for v in tensors.values()) <= BUDGET


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, 1e5, -1e5]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["float32", "float64", "float16", "int32"]), st.lists(values, min_size=1, max_size=4), st.booleans()
)
def test_a_well_formed_base_of_any_values_reaches_a_handler_only_if_every_rule_passes(dtype, fill, equal):
    """Bases the real packer packed (equal tensors stored once: ``same-as``), of any values: a handler sees one only
    when it is finite, within max_abs and of an accepted dtype, and making it costs at most 2x the base's bytes."""
    from shared.packing import pack_content

    base = {k: np.resize(np.asarray(fill, np.float64), shape).astype(dtype) for k, shape in SPEC.items()}
    if equal:  # two tensors of one shape, equal: packed once
        base["base.c"] = base["base.a"][:4, :4].copy()
    content = pack_content(RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in base.items()})}))
    seen = []
    tracemalloc.start()
    try:
        mod(
            Message(content=content, dst_node_id=1, message_type="train"),
            None,
            lambda m, c: (
                seen.append({k: v.numpy() for k, v in m.content["arrays"].items()}) or Message(RecordDict(), reply_to=m)
            ),
        )
    except UnsafeBase:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 2 * BASE_BYTES + 64 * 1024
    ok = dtype in ACCEPTED_DTYPES and all(np.isfinite(v).all() and np.abs(v).max() <= 1e4 for v in base.values())
    ok = ok and math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in base.values())) <= 1e3
    assert bool(seen) == ok
