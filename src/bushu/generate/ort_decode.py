"""The decode step on ONNX Runtime, for its weight-only MatMulNBits variants (int8, int4).

The same step graph as OpenVINO's (`openvino_decode.DecodeStep`: the cache read in place, this
token's keys and values returned and written into the cache here), exported to ONNX and rewritten
for ONNX Runtime's MatMulNBits quantiser (weights as initializers, `Gemm` as `MatMul` + `Add`:
it takes nothing else); then every `MatMul` with a constant weight is quantised in blocks along
its input (`quantize_step`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from bushu.generate.openvino_decode import DecodeStep, StepGraph, step_example


def input_names(layers: int) -> list[str]:
    return ["ids", "lengths", *(f"past_k_{i}" for i in range(layers)), *(f"past_v_{i}" for i in range(layers))]


def _ort():
    try:
        import onnxruntime
    except ImportError:
        from bushu.errors import InvalidInput

        raise InvalidInput("the onnxruntime variants need ONNX Runtime: pip install 'bushu[optimize]'") from None
    return onnxruntime


def export_step(model, cache, out: Path) -> Path:
    """The fp32 step as ONNX, its projections as MatMul + Add."""
    import onnx

    if model.is_encoder_decoder:
        raise ValueError("the ONNX Runtime decode step covers decoder-only models")
    example = step_example(cache)
    names = input_names(cache.layers)
    dynamic = {"ids": {0: "batch", 1: "tokens"}, "lengths": {0: "batch"},
               **{name: {0: "batch", 2: "past"} for name in names[2:]},
               "keys": {0: "batch", 3: "tokens"}, "values": {0: "batch", 3: "tokens"}}
    out.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter: its deprecation notice and the tracer's shape notes say nothing
    # about this graph (its shapes are checked against the PyTorch step in the tests).
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(DecodeStep(model).eval(), example, str(out), dynamo=False, input_names=names,
                          output_names=["logits", "keys", "values"], dynamic_axes=dynamic, opset_version=17)
    graph = onnx.load(str(out))
    _for_the_quantiser(graph)
    onnx.save(graph, str(out))
    return out


def _for_the_quantiser(graph) -> None:
    """Rewrite the traced graph the way MatMulNBits' quantiser reads weights: constant matrices
    (bushu's weights are plain tensors, traced as `Constant` nodes) as initializers, a
    transposed constant (the output layer) folded, and each plain `Gemm` as `MatMul` + `Add`."""
    from onnx import helper, numpy_helper

    constants: dict[str, object] = {}
    nodes = []
    for node in graph.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant" and "value" in attrs and len(attrs["value"].dims) == 2:
            constants[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        if node.op_type == "Transpose" and node.input[0] in constants and list(attrs.get("perm", [1, 0])) == [1, 0]:
            constants[node.output[0]] = constants[node.input[0]].T.copy()
            continue
        plain = attrs.get("transA", 0) == 0 and attrs.get("transB", 0) == 0 and attrs.get("alpha", 1.0) == 1.0 \
            and attrs.get("beta", 1.0) == 1.0
        if node.op_type == "Gemm" and plain:
            product = f"{node.output[0]}_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
            nodes.append(helper.make_node("MatMul", list(node.input[:2]), [product], name=f"{node.name}_matmul"))
            if product != node.output[0]:
                nodes.append(helper.make_node("Add", [product, node.input[2]], list(node.output),
                                              name=f"{node.name}_add"))
            continue
        nodes.append(node)
    used = {name for node in nodes for name in node.input}
    graph.graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in constants.items()
                                   if name in used)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)


def quantize_step(fp32: Path, out: Path, bits: int, block_size: int = 32) -> Path:
    """Every constant-weight MatMul of the step → MatMulNBits (`bits` 8 or 4, symmetric, blocks of
    `block_size` inputs, fp32 activations): weight-only."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=bits, block_size=block_size, is_symmetric=True)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    return out


class OrtDecode(StepGraph):
    def __init__(self, model, cache, threads: int = 0, step_file=None) -> None:
        if step_file is None:
            raise ValueError("the ONNX Runtime decode step runs a saved step file (a variant's 'step')")
        ort = _ort()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(step_file), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        super().__init__(cache, len(self.names), step_file)

    def _run(self, ids: torch.Tensor, lengths: torch.Tensor, cached: list[torch.Tensor]):
        feeds = dict(zip(self.names, (ids.numpy(), lengths.numpy(), *(c.numpy() for c in cached))))
        return (torch.from_numpy(x) for x in self.session.run(None, feeds))
