"""Export HYDRA to a device bundle: ONNX encoders (LoRA merged) and the scorer graphs, no torch needed to use it.

Steps:

1. :func:`template_encoder` exports the frozen MiniLM once (torch, eager attention, dynamic batch and sequence
   axes, mean pooling and L2 normalization inside the graph, weight names preserved) and caches it under
   ``$FEDHYDRA_HOME/onnx/``.
2. :func:`merge_lora` adds a role's LoRA to the template's query/value weights in numpy
   (``W + alpha/r * B @ A``), so a new global base becomes new ONNX weights without torch.
3. :func:`export_bundle` writes, per role, ``encoder-<role>.onnx`` (and ``.int8.onnx``: per-channel dynamic
   int8 quantization of every linear layer, see :func:`fold_weight_transposes`), ``scorer-<role>.onnx`` with
   the shared head (:func:`build_scorer_model`; a device scores its user's own head in numpy),
   ``base.safetensors`` (trunks, shared heads, editor, rating head),
   ``tokenizer.json`` and ``bundle.json`` (format, version, model config, file hashes).

Example::

    export_bundle(shared_arrays, ModelConfig(), "bundle/")      # then PersonalClient("store/", "bundle/")
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shared.errors import FedHydraError
from shared.hydra.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, save_tensors
from shared.hydra.decision import BASELINE_ANCHOR
from shared.hydra.scorer_graph import ScorerWeights
from shared.hydra.spec import EMBED_DIM, N_EXTRA, ROLES, ModelConfig
from shared.hydra.tokenizer import encoder_path
from shared.io import atomic_write_bytes, atomic_write_text
from shared.paths import fedhydra_home

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "template_encoder",
    "merge_lora",
    "export_bundle",
    "quantize_int8",
    "fold_weight_transposes",
    "sha256",
    "content_id",
    "build_scorer_model",
]

TEMPLATE_VERSION = "1"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def content_id(shared: Mapping[str, np.ndarray]) -> str:
    """A digest of the tensors themselves (stable across processes, unlike file bytes with metadata)."""
    digest = hashlib.sha256()
    for key in sorted(shared):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(shared[key], dtype=np.float32).tobytes())
    return digest.hexdigest()


def template_encoder(cache_dir: Path | None = None) -> Path:
    """The frozen encoder as ONNX fp32 (exported with torch on first use, then cached)."""
    folder = cache_dir or fedhydra_home() / "onnx"
    path = folder / f"minilm-template-v{TEMPLATE_VERSION}.onnx"
    if path.exists():
        return path
    import torch
    from torch import nn

    from shared.training.model import load_backbone

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = load_backbone("eager")

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return nn.functional.normalize(pooled, dim=-1)

    folder.mkdir(parents=True, exist_ok=True)
    module = Pooled().eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 2088, 102, 0]])
    mask = (ids != 0).long()
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            module,
            (ids, mask),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            opset_version=17,
            do_constant_folding=False,
            dynamo=False,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "embedding": {0: "batch"},
            },
        )
    tmp.replace(path)
    return path


def merge_lora(template: Path, shared: Mapping[str, np.ndarray], role: str, config: ModelConfig):
    """The template ONNX model with ``role``'s LoRA merged into its weights (numpy only)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(template))
    by_name = {init.name: init for init in model.graph.initializer}
    scale = config.lora_alpha / config.lora_rank
    prefix = f"base.{role}.lora."
    merged = 0
    for key in shared:
        if not key.startswith(prefix) or ".lora_A." not in key:
            continue
        module = key[len(prefix) :].replace(".lora_A.weight", "")  # encoder.layer.0.attention.self.query
        a = np.asarray(shared[key], np.float32)
        b = np.asarray(shared[key.replace(".lora_A.", ".lora_B.")], np.float32)
        name = f"model.{module}.weight"
        if name not in by_name:
            raise FedHydraError(f"{template}: no weight {name} to merge {key} into")
        weight = numpy_helper.to_array(by_name[name]).astype(np.float32)
        updated = weight + scale * (b @ a)
        by_name[name].CopyFrom(numpy_helper.from_array(updated.astype(np.float32), name))
        merged += 1
    expected = 6 * len(config.lora_targets)
    if merged != expected:
        raise FedHydraError(f"merged {merged} LoRA modules for {role}, expected {expected}")
    return model


def fold_weight_transposes(model) -> int:
    """Replace each ``MatMul(x, Transpose(W))`` whose ``W`` is an initializer by ``MatMul(x, W.T)`` (in place).

    The template is exported without constant folding (to keep the weight names LoRA merging needs), so
    every linear layer reads its weight through a Transpose; the quantizer only quantizes a MatMul whose
    weight is an initializer, so without this no linear layer would be int8. Returns how many were folded.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    made_by = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    folded, dead = 0, []
    for n in graph.node:
        src = made_by.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) > 1 else None
        if src is None or src.op_type != "Transpose" or src.input[0] not in inits:
            continue
        weight = numpy_helper.to_array(inits[src.input[0]])
        perm = next((list(a.ints) for a in src.attribute if a.name == "perm"), None)
        name = f"{src.input[0]}.T"
        if name not in inits:
            inits[name] = numpy_helper.from_array(np.ascontiguousarray(np.transpose(weight, perm)), name)
            graph.initializer.append(inits[name])
        readers[n.input[1]] -= 1
        if readers[n.input[1]] == 0:
            dead.append(src)
        n.input[1] = name
        folded += 1
    for node in dead:
        graph.node.remove(node)
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return folded


def quantize_int8(src: Path, dst: Path) -> Path:
    """Per-channel dynamic int8 quantization of the linear weights (onnxruntime), after
    :func:`fold_weight_transposes` so that every linear layer's weight is quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    if not fold_weight_transposes(model):
        raise FedHydraError(f"{src}: no linear weight to quantize")
    folded = dst.with_suffix(".folded.onnx")
    tmp = dst.with_suffix(".tmp.onnx")
    try:
        onnx.save(model, str(folded))
        quantize_dynamic(str(folded), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        folded.unlink(missing_ok=True)
    tmp.replace(dst)
    return dst


def export_bundle(
    shared: Mapping[str, np.ndarray],
    config: ModelConfig,
    out_dir: str | Path,
    *,
    quantize: bool = True,
    template: Path | None = None,
    margin: float | None = None,
    anchor: str | None = None,
    llm_calls: int | None = None,
    **meta: object,
) -> Path:
    """Write a device bundle for this global base (see the module docstring); returns its folder.

    ``margin`` (chosen on training users, :mod:`shared.training.calibrate`) goes into the manifest as text ("inf":
    never leave the baseline); devices apply it (:mod:`shared.hydra.decision`); None: no margin rule. ``anchor``
    (chosen with it; :func:`shared.hydra.candidates.anchors_for`) is the answer kept below the margin; None or
    ``baseline``: the strongest non-LLM answer, and the manifest says nothing. ``llm_calls`` (chosen with them) is
    how many LLM answers an answer asks for; None: the whole pool's, and the manifest says nothing.
    """
    import onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shared = {k: np.asarray(v, np.float32) for k, v in shared.items()}
    template = template or template_encoder()
    files: dict[str, str] = {}
    for role in ROLES:
        enc = out / f"encoder-{role}.onnx"
        atomic_write_bytes(enc, merge_lora(template, shared, role, config).SerializeToString())
        files[enc.name] = sha256(enc)
        if quantize:
            q = quantize_int8(enc, out / f"encoder-{role}.int8.onnx")
            files[q.name] = sha256(q)
        weights = ScorerWeights.from_state(shared, shared, role, head_prefix=f"base.{role}.shared_head.")
        scorer = out / f"scorer-{role}.onnx"
        atomic_write_bytes(scorer, build_scorer_model(weights, EMBED_DIM, N_EXTRA[role]).SerializeToString())
        onnx.checker.check_model(str(scorer))
        files[scorer.name] = sha256(scorer)
    small = {k: v for k, v in shared.items() if ".lora." not in k}
    save_tensors(out / "base.safetensors", small, kind="base", model=config)
    files["base.safetensors"] = sha256(out / "base.safetensors")
    shutil.copyfile(encoder_path() / "tokenizer.json", out / "tokenizer.json")
    files["tokenizer.json"] = sha256(out / "tokenizer.json")
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "model": json.loads(config.to_json()),
        "content": content_id(shared),
        "files": files,
        **{k: str(v) for k, v in meta.items()},
    }
    if margin is not None:
        manifest["margin"] = str(float(margin))
    if anchor is not None and anchor != BASELINE_ANCHOR:
        manifest["anchor"] = str(anchor)
    if llm_calls is not None:
        manifest["llm_calls"] = int(llm_calls)
    atomic_write_text(out / "bundle.json", json.dumps(manifest, indent=1))
    return out


def build_scorer_model(w: ScorerWeights, embed_dim: int, n_extra: int):
    """The scorer of :mod:`shared.hydra.scorer_graph` as an ONNX model (opset 17): inputs ``query`` [Q, D], ``items``
    [N, D], ``extras`` [N, E]; output ``scores`` [N] (what :func:`shared.hydra.scorer_graph.numpy_scores` computes)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.ascontiguousarray(w.trunk_w.T), "trunk_wt"),
        numpy_helper.from_array(w.trunk_b, "trunk_b"),
        numpy_helper.from_array(np.ascontiguousarray(w.head_w.T), "head_wt"),
        numpy_helper.from_array(w.head_b, "head_b"),
        numpy_helper.from_array(np.asarray(1.0 / math.sqrt(2.0), np.float32), "inv_sqrt2"),
        numpy_helper.from_array(np.asarray(0.5, np.float32), "half"),
        numpy_helper.from_array(np.asarray(1.0, np.float32), "one"),
        numpy_helper.from_array(np.asarray([-1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Mul", ["query", "items"], ["qc"]),
        helper.make_node("Sub", ["query", "items"], ["qmc"]),
        helper.make_node("Abs", ["qmc"], ["absdiff"]),
        helper.make_node("Concat", ["qc", "absdiff", "extras"], ["feats"], axis=-1),
        helper.make_node("MatMul", ["feats", "trunk_wt"], ["t0"]),
        helper.make_node("Add", ["t0", "trunk_b"], ["t1"]),
        helper.make_node("Mul", ["t1", "inv_sqrt2"], ["t2"]),
        helper.make_node("Erf", ["t2"], ["t3"]),
        helper.make_node("Add", ["t3", "one"], ["t4"]),
        helper.make_node("Mul", ["t1", "t4"], ["t5"]),
        helper.make_node("Mul", ["t5", "half"], ["hidden"]),
        helper.make_node("Concat", ["hidden", "extras"], ["z"], axis=-1),
        helper.make_node("MatMul", ["z", "head_wt"], ["s0"]),
        helper.make_node("Add", ["s0", "head_b"], ["s1"]),
        helper.make_node("Reshape", ["s1", "flat"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fedhydra_scorer",
        [
            helper.make_tensor_value_info("query", TensorProto.FLOAT, ["q", embed_dim]),
            helper.make_tensor_value_info("items", TensorProto.FLOAT, ["n", embed_dim]),
            helper.make_tensor_value_info("extras", TensorProto.FLOAT, ["n", n_extra]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fedhydra")
    model.ir_version = 8
    return model
