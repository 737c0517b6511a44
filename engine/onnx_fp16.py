"""A mixed-precision copy of the decoder's ONNX graph: FP16 inside, FP32 where precision matters.

TensorRT 11 builds *strongly typed* networks only (no `BuilderFlag.FP16`): each tensor's type comes
from the ONNX graph itself, so FP16 needs an FP16 graph. `to_mixed_fp16` rewrites the lowered graph
(`engine/lowering.py`, 47 nodes): every float initializer and activation becomes FP16, except

- the first layer that reads the landmarks (`Gemm` with the normalisation folded in: it subtracts a
  ~100 mm mean from ~100 mm inputs, a cancellation FP16's 0.06 mm step at 100 would spoil), and
- the last node of each output (`Add` of the mean head in mm; the expression `Sigmoid`),

which stay FP32, with `Cast` nodes on the edges between the two. Inputs and outputs stay FP32, so a
caller sees the same signature. ONNX Runtime's CPU provider runs the result (tests compare it with
the FP32 graph); TensorRT 10 and 11 build it strongly typed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto data types
MIXED_FP16_DOMAIN_KEY = "facemesh_precision"


def _first_consumer(graph, name: str):
    return next((n for n in graph.node if name in n.input), None)


def fp32_nodes(model) -> set[str]:
    """Names of the nodes kept in FP32 (module docstring): the first float node reading a graph input,
    and the producer of each graph output."""
    g = model.graph
    keep: set[str] = set()
    for inp in g.input:
        node = _first_consumer(g, inp.name)
        while node is not None and node.op_type in ("Reshape", "Transpose", "Flatten", "Unsqueeze", "Squeeze"):
            node = _first_consumer(g, node.output[0])
        if node is not None:
            keep.add(node.name)
    for out in g.output:
        keep.update(n.name for n in g.node if out.name in n.output)
    return keep


def to_mixed_fp16(model, keep: set[str] | None = None):
    """An FP16 copy of `model` (onnx.ModelProto) with the nodes named in `keep` (default `fp32_nodes`)
    left in FP32 and Casts inserted between the precisions. Nodes must carry unique names (the
    exporter's do). Integer tensors (shapes, gather indices) are untouched."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep = fp32_nodes(model) if keep is None else set(keep)
    inits = {t.name: t for t in g.initializer}
    dtype: dict[str, int] = {i.name: i.type.tensor_type.elem_type for i in g.input}
    dtype.update({t.name: t.data_type for t in g.initializer})
    converted: dict[tuple[str, int], str] = {}
    new_inits = []
    nodes = []

    def as_type(name: str, want: int) -> str:
        """`name` as a tensor of type `want`: itself, a converted initializer, or a Cast's output."""
        have = dtype.get(name)
        if have not in (FLOAT, FLOAT16) or have == want:
            return name
        key = (name, want)
        if key not in converted:
            if name in inits:
                arr = numpy_helper.to_array(inits[name]).astype(np.float16 if want == FLOAT16 else np.float32)
                new = f"{name}__{'fp16' if want == FLOAT16 else 'fp32'}"
                new_inits.append(numpy_helper.from_array(arr, new))
            else:
                new = f"{name}__cast{'16' if want == FLOAT16 else '32'}"
                nodes.append(helper.make_node("Cast", [name], [new], to=want, name=f"{new}__node"))
            dtype[new] = want
            converted[key] = new
        return converted[key]

    for node in g.node:
        if node.op_type == "Constant":
            value = next(a for a in node.attribute if a.name == "value")
            dtype[node.output[0]] = value.t.data_type
            nodes.append(node)
            continue
        want = FLOAT if node.name in keep else FLOAT16
        float_in = [dtype.get(i) in (FLOAT, FLOAT16) for i in node.input]
        new = onnx.NodeProto()
        new.CopyFrom(node)
        del new.input[:]
        for name, is_float in zip(node.input, float_in):
            # shape-like ops keep their data input's type as it comes (no cast needed around them)
            passthrough = node.op_type in ("Reshape", "Transpose", "Gather") and name == node.input[0]
            new.input.append(name if not is_float or passthrough else as_type(name, want))
        if node.op_type in ("Reshape", "Transpose", "Gather"):
            out_type = dtype.get(node.input[0], FLOAT)
        else:
            out_type = want if any(float_in) else dtype.get(node.input[0], FLOAT)
        for o in node.output:
            dtype[o] = out_type
        nodes.append(new)
    # graph outputs are FP32
    for out in g.output:
        if dtype.get(out.name) == FLOAT16:
            raise ValueError(f"output {out.name} would be FP16; keep its producer in FP32")
    # initializers: the FP16 copies replace originals that no FP32 node reads any more
    used = {i for n in nodes for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = MIXED_FP16_DOMAIN_KEY, "mixed-fp16: " + ",".join(sorted(keep))
    onnx.checker.check_model(m)
    return m


def write_mixed_fp16(src: Path, dst: Path) -> Path:
    """Read an FP32 ONNX file, write its mixed-precision copy (atomically); returns `dst`."""
    import os

    import onnx

    model = to_mixed_fp16(onnx.load(str(src)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return dst
