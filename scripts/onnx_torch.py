"""
A small interpreter of ONNX graphs in torch (float32 on the CPU), for the reference scripts: it evaluates the tiny
model's exported graphs node by node with torch operators, independently of ONNX Runtime, so diffusers' own pipeline
code can run over the same weights as torch modules (scripts/make-img2img-references.py).

Only the operators the Stable Diffusion exports use are implemented (text encoder, UNet, VAE encoder and decoder of
diffusers' convert_stable_diffusion_checkpoint_to_onnx.py, opset 14); an unknown operator raises. `run(feeds,
outputs)` evaluates only the nodes those outputs need, so a graph can be read up to an inner tensor (the VAE
encoder's quant_conv output, before its in-graph sampling).
"""
import os

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

ONNX_TO_TORCH = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64}


def attributes(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def as_ints(tensor) -> list:
    return [int(v) for v in tensor.reshape(-1).tolist()]


class OnnxTorchModel:
    def __init__(self, path: str):
        self.model = onnx.load(path, load_external_data=False)
        onnx.external_data_helper.load_external_data_for_model(self.model, os.path.dirname(path))
        graph = self.model.graph
        self.initializers = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
        self.nodes = list(graph.node)
        self.producer = {output: index for index, node in enumerate(self.nodes) for output in node.output}
        self.output_names = [o.name for o in graph.output]

    def node_by_name_pattern(self, op_type: str, fragment: str):
        found = [n for n in self.nodes if n.op_type == op_type and fragment in n.name]
        assert len(found) == 1, f"{len(found)} {op_type} nodes named like {fragment}"
        return found[0]

    def run(self, feeds: dict, outputs=None) -> dict:
        wanted = list(outputs or self.output_names)
        needed = set()
        stack = list(wanted)
        while stack:
            name = stack.pop()
            index = self.producer.get(name)
            if index is None or index in needed:
                continue
            needed.add(index)
            stack.extend(i for i in self.nodes[index].input if i)
        values = dict(self.initializers)
        values.update(feeds)
        with torch.no_grad():
            for index in sorted(needed):
                node = self.nodes[index]
                inputs = [values[i] if i else None for i in node.input]
                results = evaluate(node, inputs)
                for name, value in zip(node.output, results):
                    values[name] = value
        return {name: values[name] for name in wanted}


def evaluate(node, x) -> list:
    op = node.op_type
    a = attributes(node)
    if op == "Constant":
        return [torch.from_numpy(numpy_helper.to_array(a["value"]).copy())]
    if op == "Identity":
        return [x[0]]
    if op == "Add":
        return [x[0] + x[1]]
    if op == "Sub":
        return [x[0] - x[1]]
    if op == "Mul":
        return [x[0] * x[1]]
    if op == "Div":
        if not x[0].is_floating_point() and not x[1].is_floating_point():
            return [torch.div(x[0], x[1], rounding_mode="trunc")]
        return [x[0] / x[1]]
    if op == "Pow":
        return [torch.pow(x[0], x[1])]
    if op == "Sqrt":
        return [torch.sqrt(x[0])]
    if op == "Exp":
        return [torch.exp(x[0])]
    if op == "Erf":
        return [torch.erf(x[0])]
    if op == "Sin":
        return [torch.sin(x[0])]
    if op == "Cos":
        return [torch.cos(x[0])]
    if op == "Sigmoid":
        return [torch.sigmoid(x[0])]
    if op == "IsNaN":
        return [torch.isnan(x[0])]
    if op == "Equal":
        return [x[0] == x[1]]
    if op == "LessOrEqual":
        return [x[0] <= x[1]]
    if op == "Where":
        return [torch.where(x[0], x[1], x[2])]
    if op == "MatMul":
        return [torch.matmul(x[0], x[1])]
    if op == "Gemm":
        left = x[0].t() if a.get("transA", 0) else x[0]
        right = x[1].t() if a.get("transB", 0) else x[1]
        out = a.get("alpha", 1.0) * torch.matmul(left, right)
        if len(x) > 2 and x[2] is not None:
            out = out + a.get("beta", 1.0) * x[2]
        return [out]
    if op == "Conv":
        pads = a.get("pads", [0, 0, 0, 0])
        assert pads[:2] == pads[2:], f"asymmetric conv pads {pads}"
        return [F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None, stride=a.get("strides", [1, 1]), padding=pads[:2], dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))]
    if op == "InstanceNormalization":
        return [F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5))]
    if op == "Softmax":
        return [torch.softmax(x[0], dim=a.get("axis", -1))]
    if op == "ReduceMean":
        return [torch.mean(x[0], dim=a["axes"], keepdim=bool(a.get("keepdims", 1)))]
    if op == "Clip":
        low = x[1] if len(x) > 1 and x[1] is not None else None
        high = x[2] if len(x) > 2 and x[2] is not None else None
        return [torch.clamp(x[0], min=None if low is None else low.item(), max=None if high is None else high.item())]
    if op == "Cast":
        return [x[0].to(ONNX_TO_TORCH[a["to"]])]
    if op == "Shape":
        return [torch.tensor(list(x[0].shape), dtype=torch.int64)]
    if op == "ConstantOfShape":
        value = torch.from_numpy(numpy_helper.to_array(a["value"]).copy()) if "value" in a else torch.zeros(1)
        return [torch.full(as_ints(x[0]), value.item(), dtype=value.dtype)]
    if op == "Reshape":
        shape = as_ints(x[1])
        shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x[0].reshape(shape)]
    if op == "Flatten":
        axis = a.get("axis", 1)
        return [x[0].reshape(int(np.prod(x[0].shape[:axis])), -1)]
    if op == "Transpose":
        return [x[0].permute(a["perm"])]
    if op == "Unsqueeze":
        out = x[0]
        for axis in sorted(as_ints(x[1])):
            out = out.unsqueeze(axis if axis >= 0 else axis + out.dim() + 1)
        return [out]
    if op == "Concat":
        return [torch.cat(x, dim=a["axis"])]
    if op == "Gather":
        axis = a.get("axis", 0)
        data, indices = x[0], x[1].to(torch.int64)
        indices = torch.where(indices < 0, indices + data.shape[axis], indices)
        out = torch.index_select(data, axis, indices.reshape(-1))
        return [out.reshape(list(data.shape[:axis]) + list(indices.shape) + list(data.shape[axis + 1 :]))]
    if op == "Slice":
        data = x[0]
        starts, ends = as_ints(x[1]), as_ints(x[2])
        axes = as_ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = as_ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
        index = [slice(None)] * data.dim()
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[axis] = slice(start, end, step)
        if all(step == 1 for step in steps):
            return [data[tuple(index)]]
        # torch has no negative steps; the exporter reverses small shape vectors (F.pad's pads) this way.
        return [torch.from_numpy(data.numpy()[tuple(index)].copy())]
    if op == "Expand":
        shape = torch.broadcast_shapes(tuple(x[0].shape), tuple(as_ints(x[1])))
        return [torch.broadcast_to(x[0], shape)]
    if op == "Range":
        return [torch.arange(x[0].item(), x[1].item(), x[2].item(), dtype=x[0].dtype)]
    if op == "ArgMax":
        out = torch.argmax(x[0], dim=a.get("axis", 0), keepdim=bool(a.get("keepdims", 1)))
        return [out]
    if op == "Pad":
        pads = as_ints(x[1])
        rank = x[0].dim()
        torch_pads = []
        for axis in reversed(range(rank)):
            torch_pads += [pads[axis], pads[axis + rank]]
        value = x[2].item() if len(x) > 2 and x[2] is not None else 0.0
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        assert mode == "constant", f"Pad mode {mode}"
        return [F.pad(x[0], torch_pads, mode="constant", value=value)]
    if op == "Resize":
        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        assert mode == "nearest", f"Resize mode {mode}"
        sizes = x[3] if len(x) > 3 and x[3] is not None and x[3].numel() > 0 else None
        if sizes is not None:
            size = as_ints(sizes)[2:]
        else:
            scales = x[2].reshape(-1).tolist()
            size = [int(dim * scale) for dim, scale in zip(x[0].shape[2:], scales[2:])]
        return [F.interpolate(x[0], size=size, mode="nearest")]
    raise NotImplementedError(f"ONNX operator {op} ({node.name})")
