"""A message's tensors packed into one flat array per dtype, with their layout beside them.

Flower 1.41 ships a message as a tree of objects (the message, each record, each array, each array's chunks), and a
SuperNode pushes or pulls every object in an HTTP request of its own: FedHydra's shared base, 61 tensors, costs a
reply 126 requests. Packed, the same tensors travel as one array per dtype (one chunk under Flower's 5 MB chunk size)
and a config record that names them: 7 objects. A real LaMP-7 client's upload in a deployment fell from 626-750 kB to
361-435 kB a round (``docs/lab-notebook.md``, "Bytes per client per round").

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
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import PackingError

__all__ = [
    "FORMAT",
    "PACKED_RECORD",
    "LAYOUT_RECORD",
    "MAX_NDIM",
    "Tensors",
    "Fingerprint",
    "fingerprint",
    "pack_arrays",
    "unpack_arrays",
    "is_packed",
    "array_tensors",
    "array_view",
    "flat_views",
    "pack_content",
    "unpack_content",
    "packed_tensors",
    "declared_tensors",
    "check_layout_size",
]

FORMAT = 1
"""The layout's format; :func:`unpack_arrays` refuses any other."""
PACKED_RECORD = "packed"
"""The name of the array record that holds the flat arrays."""
LAYOUT_RECORD = "packing"
"""The name of the config record that holds the layout."""
_LISTS = ("records", "record-of", "keys", "dtypes", "ndims", "dims", "same-as", "sent")

MAX_NDIM = 8
"""The most dimensions a packed tensor may have (FedHydra's have 1 or 2)."""

Tensors = Mapping[str, Mapping[str, Any]]
"""``{record name: {key: tensor}}``: a message's array records (as a reference: tensors or :class:`Fingerprint`)."""


@dataclass(frozen=True)
class Fingerprint:
    """What a tensor is, without its values: dtype, shape and a SHA-256 of its bytes (C order). A reference made of
    fingerprints marks a reply's equal tensors ``sent`` as the tensors themselves would, without keeping a copy."""

    dtype: str
    shape: tuple[int, ...]
    digest: bytes


def fingerprint(value: Any) -> Fingerprint:
    """The :class:`Fingerprint` of a tensor."""
    value = np.asarray(value)
    return Fingerprint(value.dtype.name, tuple(value.shape), hashlib.sha256(np.ascontiguousarray(value).data).digest())


def _equal(a: np.ndarray, b: Any) -> bool:
    if isinstance(b, Fingerprint):
        return a.dtype.name == b.dtype and tuple(a.shape) == b.shape and fingerprint(a).digest == b.digest
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
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= (v if most is None else most) for v in values
    ):
        raise PackingError(
            f"packed message: layout field {field!r} must hold whole numbers >= 0"
            + (f" and <= {most}" if most is not None else "")
        )
    return values


def check_layout_size(layout: Mapping[str, Any], max_tensors: int) -> None:
    """Raise :class:`PackingError` unless every list of ``layout`` is short enough for at most ``max_tensors``
    tensors of at most :data:`MAX_NDIM` dimensions: checked on the lists' lengths alone, before any entry is read."""
    if layout.get("format") != FORMAT:
        raise PackingError(f"packed message: layout format {layout.get('format')!r}, this FedHydra reads {FORMAT}")
    missing = [k for k in _LISTS if not isinstance(layout.get(k), list)]
    if missing:
        raise PackingError(f"packed message: layout field {missing[0]!r} missing or not a list")
    for field in _LISTS:
        most = max_tensors * MAX_NDIM if field == "dims" else max_tensors
        if len(layout[field]) > most:
            raise PackingError(
                f"packed message: layout field {field!r} holds {len(layout[field])} entries, at most {most}"
            )


def _entries(layout: Mapping[str, Any], max_tensors: int | None = None) -> tuple[list[str], list[tuple]]:
    """The layout checked for form: (record names, per tensor (record, key, dtype, shape, same-as, sent));
    ``max_tensors``: first :func:`check_layout_size`."""
    if max_tensors is not None:
        check_layout_size(layout, max_tensors)
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
        raise PackingError(
            "packed message: layout fields 'record-of', 'keys', 'dtypes', 'ndims', 'same-as' and 'sent' "
            "differ in length"
        )
    if any(n > MAX_NDIM for n in ndims):
        raise PackingError(f"packed message: a tensor of the layout has more than {MAX_NDIM} dimensions")
    if sum(ndims) != len(dims):
        raise PackingError(f"packed message: layout field 'dims' holds {len(dims)} sizes, 'ndims' asks {sum(ndims)}")
    if len(set(names)) != len(names):
        raise PackingError("packed message: a record name repeats in layout field 'records'")
    entries, at, seen = [], 0, set()
    for record, key, dtype, ndim, same, was_sent in zip(record_of, keys, dtypes, ndims, same_as, sent):
        shape = tuple(dims[at : at + ndim])
        at += ndim
        if record >= len(names):
            raise PackingError(f"packed message: tensor {key!r} is of record {record}, the layout has {len(names)}")
        if (record, key) in seen:
            raise PackingError(f"packed message: tensor {key!r} repeats in record {names[record]!r}")
        seen.add((record, key))
        entries.append((names[record], key, dtype, shape, same, was_sent))
    return names, entries


def unpack_arrays(
    flat: Mapping[str, np.ndarray],
    layout: Mapping[str, Any],
    *,
    reference: Tensors | None,
    max_tensors: int | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """The ``{record: {key: tensor}}`` that :func:`pack_arrays` packed, the tensors marked ``sent`` taken from
    ``reference`` (the message this one answers; None: there was none); :class:`PackingError` unless ``layout``
    describes ``flat`` exactly (every value used once, every tensor within the array of its dtype).

    Nothing is copied: every tensor is a view of ``flat`` (a ``same-as`` tensor is the very object of the one it
    names), so what this returns takes no more memory than ``flat`` whatever the layout says. ``max_tensors``: a
    layout naming more tensors is refused before any entry is read (:func:`check_layout_size`)."""
    names, entries = _entries(layout, max_tensors)
    for dtype, values in flat.items():
        if np.asarray(values).ndim != 1 or np.asarray(values).dtype.name != dtype:
            raise PackingError(
                f"packed message: array {dtype!r} must be 1-D of dtype {dtype}, "
                f"got {np.asarray(values).dtype} of shape {np.asarray(values).shape}"
            )
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in names}
    offsets = {dtype: 0 for dtype in flat}
    tensors: list[np.ndarray] = []
    for position, (name, key, dtype, shape, same, sent) in enumerate(entries):
        if sent:
            value = (reference or {}).get(name, {}).get(key)
            if value is None or np.asarray(value).dtype.name != dtype or np.asarray(value).shape != shape:
                raise PackingError(
                    f"packed message: tensor {key!r} of record {name!r} is marked as sent back "
                    f"unchanged, and the message it answers has no such {dtype} {shape} tensor"
                )
            value = np.asarray(value)
        elif same != position:
            if same > position or entries[same][4] != same or entries[same][5] or entries[same][2:4] != (dtype, shape):
                raise PackingError(
                    f"packed message: tensor {key!r} is 'same-as' {same}, which is no earlier stored "
                    f"tensor of dtype {dtype} and shape {shape}"
                )
            value = tensors[same]
        else:
            if dtype not in flat:
                raise PackingError(f"packed message: tensor {key!r} is {dtype}, and no {dtype} array came")
            size, start = int(np.prod(shape, dtype=np.int64)), offsets[dtype]
            if start + size > flat[dtype].size:
                raise PackingError(f"packed message: tensor {key!r} {shape} runs past the end of the {dtype} array")
            value = flat[dtype][start : start + size].reshape(shape)
            offsets[dtype] = start + size
        tensors.append(value)
        out[name][key] = value
    for dtype, used in offsets.items():
        if used != flat[dtype].size:
            raise PackingError(
                f"packed message: the {dtype} array holds {flat[dtype].size} values, its layout describes {used}"
            )
    return out


def is_packed(content: Any) -> bool:
    """Whether a Flower ``RecordDict`` is packed (holds the layout record)."""
    return LAYOUT_RECORD in content.config_records


def array_tensors(content: Any) -> dict[str, dict[str, np.ndarray]]:
    """A Flower ``RecordDict``'s array records as ``{record: {key: numpy array}}`` (copies)."""
    return {name: {k: v.numpy() for k, v in record.items()} for name, record in content.array_records.items()}


def array_view(array: Any) -> np.ndarray:
    """A Flower ``Array``'s values as a read-only NumPy view of its bytes (no copy), read as ``Array.numpy`` reads
    them (the ``.npy`` format, never pickles); :class:`PackingError` when the bytes are no plain ``.npy`` array of
    numbers or hold more or fewer values than their header says."""
    data = array.data
    try:
        stream = io.BytesIO(data)  # shares ``data`` until written to
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"format version {version}")
    except (ValueError, TypeError, OSError, SyntaxError) as exc:
        raise PackingError(f"packed message: an array's bytes are not a .npy array ({type(exc).__name__})") from None
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise PackingError(f"packed message: an array of dtype {dtype} (numbers only)")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    offset = stream.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise PackingError(
            f"packed message: an array's header says {count} values of {dtype}, its bytes hold {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape, order="F" if fortran else "C")


def flat_views(content: Any) -> dict[str, np.ndarray]:
    """The flat arrays of a packed ``RecordDict``, each a read-only view of the bytes that came (:func:`array_view`)."""
    if PACKED_RECORD not in content.array_records:
        raise PackingError(f"packed message without its array record {PACKED_RECORD!r}")
    return {k: array_view(v) for k, v in content.array_records[PACKED_RECORD].items()}


def pack_content(content: Any, *, reference: Tensors | None = None) -> Any:
    """A Flower ``RecordDict`` with its array records packed (the others kept as they are); unchanged when it has no
    array record. ``reference``: the tensors of the message this content answers (:func:`array_tensors`), whose equal
    tensors are marked ``sent`` instead of stored."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    arrays = content.array_records
    if not arrays:
        return content
    if PACKED_RECORD in content or LAYOUT_RECORD in content:
        raise PackingError(
            f"cannot pack a message that already has a record named {PACKED_RECORD!r} or {LAYOUT_RECORD!r}"
        )
    flat, layout = pack_arrays(array_tensors(content), reference=reference)
    out = RecordDict({name: record for name, record in content.items() if name not in arrays})
    out[PACKED_RECORD] = ArrayRecord({dtype: Array(values) for dtype, values in flat.items()})
    out[LAYOUT_RECORD] = ConfigRecord(layout)
    return out


def unpack_content(
    content: Any,
    *,
    reference: Tensors | None = None,
    max_tensors: int | None = None,
    records: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> Any:
    """The Flower ``RecordDict`` that :func:`pack_content` packed (``reference``: the tensors of the message it
    answers, if any); :class:`PackingError` on a layout that does not fit, or a packed message without its arrays.

    ``max_tensors``: refuse a layout naming more tensors before any entry is read. ``records``: the tensors
    :func:`unpack_arrays` already made of this content (a caller that checked them first). A tensor stored once and
    named several times (``same-as``) becomes one ``Array`` under each name, never a copy per name."""
    from flwr.app import Array, ArrayRecord, RecordDict

    if PACKED_RECORD not in content.array_records:
        raise PackingError(f"packed message without its array record {PACKED_RECORD!r}")
    if len(content.array_records) != 1:
        raise PackingError(
            f"packed message with array records besides {PACKED_RECORD!r}: "
            f"{sorted(set(content.array_records) - {PACKED_RECORD})}"
        )
    if records is None:
        records = unpack_arrays(
            flat_views(content),
            dict(content.config_records[LAYOUT_RECORD]),
            reference=reference,
            max_tensors=max_tensors,
        )
    out = RecordDict({name: record for name, record in content.items() if name not in (PACKED_RECORD, LAYOUT_RECORD)})
    made: dict[int, Any] = {}  # id of a tensor -> its Array: a tensor named twice is serialized once
    for name, tensors in records.items():
        if name in out:
            raise PackingError(f"packed message: record {name!r} is both packed and unpacked")
        arrays = {}
        for k, v in tensors.items():
            if id(v) not in made:
                made[id(v)] = (v, Array(np.ascontiguousarray(v)))
            arrays[k] = made[id(v)][1]
        out[name] = ArrayRecord(arrays)
    return out


def declared_tensors(
    layout: Mapping[str, Any], *, max_tensors: int | None = None
) -> dict[str, dict[str, tuple[list[int], str, bool]]]:
    """What a layout says its message carries: ``{record: {key: (shape, dtype, sent back unchanged)}}``, read from the
    layout alone (:class:`PackingError` on a layout of the wrong form; ``max_tensors``: or naming more tensors)."""
    names, entries = _entries(layout, max_tensors)
    out: dict[str, dict[str, tuple[list[int], str, bool]]] = {name: {} for name in names}
    for name, key, dtype, shape, _, sent in entries:
        out[name][key] = (list(shape), dtype, bool(sent))
    return out


def packed_tensors(content: Any) -> dict[str, dict[str, tuple[list[int], str, bool]]]:
    """What a packed ``RecordDict`` carries, read from its layout: ``{record: {key: (shape, dtype, sent back
    unchanged)}}`` (:class:`PackingError` on a layout of the wrong form)."""
    return declared_tensors(dict(content.config_records[LAYOUT_RECORD]))
