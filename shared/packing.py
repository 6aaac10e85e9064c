"""A message's tensors packed into one flat array per dtype, with their layout beside them.

Flower 1.41 ships a message as a tree of objects (the message, each record, each array, each array's chunks), and a
SuperNode pushes or pulls every object in an HTTP request of its own: FedHydra's shared base, 61 tensors, costs a
reply 126 requests. Packed, the same tensors travel as one array per dtype (one chunk under Flower's 5 MB chunk size)
and a config record that names them: 7 objects. A real LaMP-7 client's upload in a deployment fell from 626-750 kB to
361-435 kB a round (``docs/results.md``, "Bytes per client per round").

Packing also stores less than separate arrays did:

- equal tensors of a message are stored once (``same-as``: the initial base's all-zero LoRA matrices), as Flower
  stores equal arrays of one message once;
- a reply's tensor equal to the one the server sent under the same record and key is not sent at all (``sent``;
  the receiver takes it from the message it sent): the parts of the base a client's round did not change.

Packing is lossless and changes nothing else in the message: the server packs what it sends
(:class:`server.packing.PackedGrid`), a client unpacks it before any handler sees it and packs its reply only when what
it received was packed (:func:`client.packing.packing_mod`); the server unpacks replies before validation. A layout
that does not describe its arrays is refused with :class:`shared.errors.PackingError`, naming the field or tensor.

The layout, a config record named :data:`LAYOUT_RECORD` (format :data:`FORMAT`):

| key | what |
|---|---|
| ``format`` | :data:`FORMAT` |
| ``records`` | the names of the message's array records, in order (empty ones included) |
| ``record-of`` | per tensor, the index of its record in ``records`` |
| ``keys``, ``dtypes``, ``ndims`` | per tensor, its key, dtype and number of dimensions |
| ``dims`` | every tensor's shape, one after the other |
| ``same-as`` | per tensor, its own index, or the index of an earlier stored tensor with the same dtype, shape and values |
| ``sent`` | per tensor, 1 when it is the tensor of the same record and key in the message this one answers (not stored), else 0 |

The flat arrays: an array record named :data:`PACKED_RECORD` with one 1-D array per dtype, keyed by the dtype's name,
each the concatenation of that dtype's stored tensors in layout order.

Example:
    >>> import numpy as np
    >>> records = {"arrays": {"base.a": np.ones((2, 3), np.float32), "base.n": np.arange(2), "base.z": np.ones(2)}}
    >>> flat, layout = pack_arrays(records, reference={"arrays": {"base.z": np.ones(2)}})
    >>> sorted(flat), flat["float32"].shape, layout["keys"], layout["dims"], layout["sent"]
    (['float32', 'int64'], (6,), ['base.a', 'base.n', 'base.z'], [2, 3, 2, 2], [0, 0, 1])
    >>> back = unpack_arrays(flat, layout, reference={"arrays": {"base.z": np.ones(2)}})
    >>> back["arrays"]["base.a"].shape, back["arrays"]["base.n"].tolist(), back["arrays"]["base.z"].tolist()
    ((2, 3), [0, 1], [1.0, 1.0])
    >>> unpack_arrays(flat, layout, reference=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    shared.errors.PackingError: packed message: tensor 'base.z' of record 'arrays' is marked as sent back unchanged, ...
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from shared.errors import PackingError

__all__ = ["FORMAT", "PACKED_RECORD", "LAYOUT_RECORD", "Tensors", "pack_arrays", "unpack_arrays", "is_packed",
           "array_tensors", "pack_content", "unpack_content", "packed_tensors"]

FORMAT = 1
"""The layout's format; :func:`unpack_arrays` refuses any other."""
PACKED_RECORD = "packed"
"""The name of the array record that holds the flat arrays."""
LAYOUT_RECORD = "packing"
"""The name of the config record that holds the layout."""
_LISTS = ("records", "record-of", "keys", "dtypes", "ndims", "dims", "same-as", "sent")

Tensors = Mapping[str, Mapping[str, np.ndarray]]
"""``{record name: {key: tensor}}``: a message's array records."""


def _equal(a: np.ndarray, b: Any) -> bool:
    b = np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def pack_arrays(records: Tensors, *, reference: Tensors | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``records`` as ``({dtype: flat array}, layout)`` (see the module docstring); a tensor equal to
    ``reference[record][key]`` (the message being answered) is marked ``sent`` and not stored."""
    layout: dict[str, Any] = {"format": FORMAT, **{k: [] for k in _LISTS}}
    parts: dict[str, list[np.ndarray]] = {}
    stored: dict[tuple, list[tuple[int, np.ndarray]]] = {}  # (dtype, shape, digest) -> the tensors stored
    for index, (name, tensors) in enumerate(records.items()):
        layout["records"].append(str(name))
        answered = (reference or {}).get(name, {})
        for key, value in tensors.items():
            value = np.asarray(value)
            if value.dtype.kind not in "biuf":
                raise PackingError(f"cannot pack tensor {key!r} of record {name!r}: dtype {value.dtype}")
            dtype, position = value.dtype.name, len(layout["keys"])
            layout["record-of"].append(index)
            layout["keys"].append(str(key))
            layout["dtypes"].append(dtype)
            layout["ndims"].append(value.ndim)
            layout["dims"].extend(int(d) for d in value.shape)
            sent = key in answered and _equal(value, answered[key])
            layout["sent"].append(int(sent))
            if sent:
                layout["same-as"].append(position)
                continue
            same = stored.setdefault((dtype, value.shape, hashlib.sha256(value.tobytes()).digest()), [])
            earlier = next((i for i, v in same if np.array_equal(v, value)), None)
            layout["same-as"].append(position if earlier is None else earlier)
            if earlier is None:
                same.append((position, value))
                parts.setdefault(dtype, []).append(value.reshape(-1))
    flat = {dtype: np.concatenate(values) for dtype, values in parts.items()}
    return flat, layout


def _ints(layout: Mapping[str, Any], field: str, *, most: int | None = None) -> list[int]:
    values = list(layout[field])
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= (v if most is None else most)
               for v in values):
        raise PackingError(f"packed message: layout field {field!r} must hold whole numbers >= 0"
                           + (f" and <= {most}" if most is not None else ""))
    return values


def _entries(layout: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """The layout checked for form: (record names, per tensor (record, key, dtype, shape, same-as, sent))."""
    if layout.get("format") != FORMAT:
        raise PackingError(f"packed message: layout format {layout.get('format')!r}, this FedHydra reads {FORMAT}")
    missing = [k for k in _LISTS if not isinstance(layout.get(k), list)]
    if missing:
        raise PackingError(f"packed message: layout field {missing[0]!r} missing or not a list")
    names = [str(n) for n in layout["records"]]
    record_of, ndims, dims = _ints(layout, "record-of"), _ints(layout, "ndims"), _ints(layout, "dims")
    same_as, sent = _ints(layout, "same-as"), _ints(layout, "sent", most=1)
    keys, dtypes = [str(k) for k in layout["keys"]], [str(d) for d in layout["dtypes"]]
    if not len(record_of) == len(keys) == len(dtypes) == len(ndims) == len(same_as) == len(sent):
        raise PackingError("packed message: layout fields 'record-of', 'keys', 'dtypes', 'ndims', 'same-as' and 'sent' "
                           "differ in length")
    if sum(ndims) != len(dims):
        raise PackingError(f"packed message: layout field 'dims' holds {len(dims)} sizes, 'ndims' asks {sum(ndims)}")
    if len(set(names)) != len(names):
        raise PackingError("packed message: a record name repeats in layout field 'records'")
    entries, at, seen = [], 0, set()
    for record, key, dtype, ndim, same, was_sent in zip(record_of, keys, dtypes, ndims, same_as, sent):
        shape = tuple(dims[at:at + ndim])
        at += ndim
        if record >= len(names):
            raise PackingError(f"packed message: tensor {key!r} is of record {record}, the layout has {len(names)}")
        if (record, key) in seen:
            raise PackingError(f"packed message: tensor {key!r} repeats in record {names[record]!r}")
        seen.add((record, key))
        entries.append((names[record], key, dtype, shape, same, was_sent))
    return names, entries


def unpack_arrays(flat: Mapping[str, np.ndarray], layout: Mapping[str, Any], *,
                  reference: Tensors | None) -> dict[str, dict[str, np.ndarray]]:
    """The ``{record: {key: tensor}}`` that :func:`pack_arrays` packed, the tensors marked ``sent`` taken from
    ``reference`` (the message this one answers; None: there was none); :class:`PackingError` unless ``layout``
    describes ``flat`` exactly (every value used once, every tensor within the array of its dtype)."""
    names, entries = _entries(layout)
    for dtype, values in flat.items():
        if np.asarray(values).ndim != 1 or np.asarray(values).dtype.name != dtype:
            raise PackingError(f"packed message: array {dtype!r} must be 1-D of dtype {dtype}, "
                               f"got {np.asarray(values).dtype} of shape {np.asarray(values).shape}")
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in names}
    offsets = {dtype: 0 for dtype in flat}
    tensors: list[np.ndarray] = []
    for position, (name, key, dtype, shape, same, sent) in enumerate(entries):
        if sent:
            value = (reference or {}).get(name, {}).get(key)
            if value is None or np.asarray(value).dtype.name != dtype or np.asarray(value).shape != shape:
                raise PackingError(f"packed message: tensor {key!r} of record {name!r} is marked as sent back "
                                   f"unchanged, and the message it answers has no such {dtype} {shape} tensor")
            value = np.asarray(value)
        elif same != position:
            if same > position or entries[same][4] != same or entries[same][5] or entries[same][2:4] != (dtype, shape):
                raise PackingError(f"packed message: tensor {key!r} is 'same-as' {same}, which is no earlier stored "
                                   f"tensor of dtype {dtype} and shape {shape}")
            value = tensors[same]
        else:
            if dtype not in flat:
                raise PackingError(f"packed message: tensor {key!r} is {dtype}, and no {dtype} array came")
            size, start = int(np.prod(shape, dtype=np.int64)), offsets[dtype]
            if start + size > flat[dtype].size:
                raise PackingError(f"packed message: tensor {key!r} {shape} runs past the end of the {dtype} array")
            value = flat[dtype][start:start + size].reshape(shape)
            offsets[dtype] = start + size
        tensors.append(value)
        out[name][key] = value
    for dtype, used in offsets.items():
        if used != flat[dtype].size:
            raise PackingError(f"packed message: the {dtype} array holds {flat[dtype].size} values, "
                               f"its layout describes {used}")
    return out


def is_packed(content: Any) -> bool:
    """Whether a Flower ``RecordDict`` is packed (holds the layout record)."""
    return LAYOUT_RECORD in content.config_records


def array_tensors(content: Any) -> dict[str, dict[str, np.ndarray]]:
    """A Flower ``RecordDict``'s array records as ``{record: {key: numpy array}}`` (copies)."""
    return {name: {k: v.numpy() for k, v in record.items()} for name, record in content.array_records.items()}


def pack_content(content: Any, *, reference: Tensors | None = None) -> Any:
    """A Flower ``RecordDict`` with its array records packed (the others kept as they are); unchanged when it has no
    array record. ``reference``: the tensors of the message this content answers (:func:`array_tensors`), whose equal
    tensors are marked ``sent`` instead of stored."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    arrays = content.array_records
    if not arrays:
        return content
    if PACKED_RECORD in content or LAYOUT_RECORD in content:
        raise PackingError(f"cannot pack a message that already has a record named {PACKED_RECORD!r} or "
                           f"{LAYOUT_RECORD!r}")
    flat, layout = pack_arrays(array_tensors(content), reference=reference)
    out = RecordDict({name: record for name, record in content.items() if name not in arrays})
    out[PACKED_RECORD] = ArrayRecord({dtype: Array(values) for dtype, values in flat.items()})
    out[LAYOUT_RECORD] = ConfigRecord(layout)
    return out


def unpack_content(content: Any, *, reference: Tensors | None = None) -> Any:
    """The Flower ``RecordDict`` that :func:`pack_content` packed (``reference``: the tensors of the message it
    answers, if any); :class:`PackingError` on a layout that does not fit, or a packed message without its arrays."""
    from flwr.app import Array, ArrayRecord, RecordDict

    if PACKED_RECORD not in content.array_records:
        raise PackingError(f"packed message without its array record {PACKED_RECORD!r}")
    if len(content.array_records) != 1:
        raise PackingError(f"packed message with array records besides {PACKED_RECORD!r}: "
                           f"{sorted(set(content.array_records) - {PACKED_RECORD})}")
    flat = {k: v.numpy() for k, v in content.array_records[PACKED_RECORD].items()}
    records = unpack_arrays(flat, dict(content.config_records[LAYOUT_RECORD]), reference=reference)
    out = RecordDict({name: record for name, record in content.items() if name not in (PACKED_RECORD, LAYOUT_RECORD)})
    for name, tensors in records.items():
        if name in out:
            raise PackingError(f"packed message: record {name!r} is both packed and unpacked")
        out[name] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in tensors.items()})
    return out


def packed_tensors(content: Any) -> dict[str, dict[str, tuple[list[int], str, bool]]]:
    """What a packed ``RecordDict`` carries, read from its layout: ``{record: {key: (shape, dtype, sent back
    unchanged)}}`` (:class:`PackingError` on a layout of the wrong form)."""
    names, entries = _entries(dict(content.config_records[LAYOUT_RECORD]))
    out: dict[str, dict[str, tuple[list[int], str, bool]]] = {name: {} for name in names}
    for name, key, dtype, shape, _, sent in entries:
        out[name][key] = (list(shape), dtype, bool(sent))
    return out
