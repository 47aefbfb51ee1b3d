"""A decoder stack's 8-bit matrices as one onnxruntime graph per layer boundary (issue 24).

With every matrix an 8-bit MatMulNBits (nbits.py), a frame of the 0.6B makes ~430 onnxruntime calls (28
talker layers and 15 x 5 code predictor layers, four matrices each). Each call pays the dispatcher, the
session's run and a wake-up of its sleeping worker thread, and the small ops between the calls run in
PyTorch. Here everything between one layer's attention and the next one's is a single graph:

    a (attention output), x (residual)
      -> o_proj -> + x -> RMSNorm -> gate_up -> SiLU(gate) * up -> down_proj -> + h
      -> RMSNorm (next layer's input norm, or the stack's final norm after the last layer) -> next qkv_proj

so a layer costs one call instead of four (plus a `head` graph for the first input norm and qkv_proj).
Each weight lives in exactly one graph (the per-matrix sessions are never made), and the same graphs serve
decode (one call per row, as NBitsLinear.mm: MLAS rounds several rows differently) and prefill (one call per
request). The norms run in onnxruntime's fp32 (Skip)SimplifiedLayerNormalization: the same formula as
layers.rms_norm, summed in another order (float round-off, ~1e-6).

Only fp32 activations on CPU with every layer's four matrices 8-bit NBitsLinear (`auto` on AVX2, AVX-512
BF16 and ARM64 with dotprod, with the cpu4bit extra); anything else keeps the per-matrix path.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import numpy as np
import torch

from . import nbits

if TYPE_CHECKING:
    from .kvcache import KVCache
    from .layers import Attention, DecoderLayer, DecoderStack

_LOGGER = logging.getLogger(__name__)


def _run(inputs: list[torch.Tensor], handle: int, group: int) -> list[torch.Tensor]:
    """Runs graph `handle` on [M, *] inputs, `group` rows per call (1: decode rows; T: a prompt)."""
    session = nbits.session(handle)
    names = [f"in{i}" for i in range(len(inputs))]
    rows = inputs[0].shape[0]
    if rows <= group:
        feeds = {n: t.contiguous().numpy() for n, t in zip(names, inputs)}
        return [torch.from_numpy(y) for y in session.run(None, feeds)]
    parts = [
        _run([t.narrow(0, start, min(group, rows - start)) for t in inputs], handle, group)
        for start in range(0, rows, group)
    ]
    return [torch.cat(outs) for outs in zip(*parts)]


# `qwen3tts::ort_graph(inputs, handle, widths, group) -> outputs [M, widths[i]]`: the traced decode steps
# (jit.py) record the call, not its result, as with nbits' `nbits_mm`.
nbits.LIBRARY.define("ort_graph(Tensor[] inputs, int handle, int[] widths, int group) -> Tensor[]")
nbits.LIBRARY.impl("ort_graph", lambda inputs, handle, widths, group: _run(inputs, handle, group), "CPU")


@torch.library.register_fake("qwen3tts::ort_graph")
def _(inputs: list[torch.Tensor], handle: int, widths: list[int], group: int) -> list[torch.Tensor]:
    return [inputs[0].new_empty(inputs[0].shape[0], w) for w in widths]


def run_graph(inputs: list[torch.Tensor], handle: int, widths: list[int], group: int) -> list[torch.Tensor]:
    if torch.jit.is_tracing():
        return list(torch.ops.qwen3tts.ort_graph(inputs, handle, widths, group))
    return _run(inputs, handle, group)


class _Graph:
    """Builds one graph: float inputs in0.., MatMulNBits nodes over taken NBitsLinear weights, norms."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.inputs: list[tuple[str, int]] = []
        self.outputs: list[tuple[str, int]] = []
        self.external: dict[str, np.ndarray] = {}  # handed to the session without a copy (nbits._external)
        self.constants: dict[str, np.ndarray] = {}  # small: norm weights, split sizes
        self._count = 0

    def name(self, what: str) -> str:
        self._count += 1
        return f"{self.prefix}{what}{self._count}"

    def input(self, width: int) -> str:
        name = f"in{len(self.inputs)}"
        self.inputs.append((name, width))
        return name

    def output(self, value: str, width: int) -> None:
        name = f"out{len(self.outputs)}"
        self.nodes.append(_node("Identity", [value], [name]))
        self.outputs.append((name, width))

    def matmul(self, x: str, matrix: "nbits.NBitsLinear") -> str:
        node, weights = matrix.node(x, self.name("y"), self.name("w"))
        self.nodes.append(node)
        self.external.update(weights)
        return node.output[0]

    def norm(self, x: str, weight: torch.Tensor, eps: float, skip: Optional[str] = None) -> tuple[str, str]:
        """RMSNorm(x [+ skip]) * weight -> (normed, x [+ skip])."""
        gamma = self.name("gamma")
        self.constants[gamma] = weight.detach().float().numpy().copy()
        normed = self.name("n")
        if skip is None:
            self.nodes.append(
                _node("SimplifiedLayerNormalization", [x, gamma], [normed], epsilon=eps, axis=-1)
            )
            return normed, x
        total = self.name("sum")
        self.nodes.append(
            _node(
                "SkipSimplifiedLayerNormalization",
                [x, skip, gamma],
                [normed, "", "", total],
                domain="com.microsoft",
                epsilon=eps,
            )
        )
        return normed, total

    def swiglu(self, gate_up: str, intermediate: int) -> str:
        sizes = self.name("split")
        self.constants[sizes] = np.array([intermediate, intermediate], dtype=np.int64)
        gate, up, sig, silu, out = (self.name(s) for s in ("g", "u", "s", "silu", "m"))
        self.nodes += [
            _node("Split", [gate_up, sizes], [gate, up], axis=-1),
            _node("Sigmoid", [gate], [sig]),
            _node("Mul", [gate, sig], [silu]),
            _node("Mul", [silu, up], [out]),
        ]
        return out

    def session(self, threads: int) -> int:
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            self.nodes,
            self.prefix or "block",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["m", w]) for n, w in self.inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["m", w]) for n, w in self.outputs],
            initializer=[nbits._external(n, a) for n, a in self.external.items()]
            + [numpy_helper.from_array(a, n) for n, a in self.constants.items()],
        )
        return nbits.register(nbits.session_of(graph, threads, self.external))


def _node(op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs: Any) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, outputs, domain=domain or None, **attrs)


def _matrices(layer: "DecoderLayer") -> Optional[list["nbits.NBitsLinear"]]:
    attn, mlp = layer.self_attn, layer.mlp
    found = [attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj]
    if all(isinstance(m, nbits.NBitsLinear) and m.bits == 8 and not m.taken for m in found):
        return cast("list[nbits.NBitsLinear]", found)
    return None


class LayerBlocks:
    """The graphs of one stack: `head` (input norm + qkv of layer 0), then one per layer (see the module
    docstring); the last one ends with the stack's final norm."""

    def __init__(self, stack: "DecoderStack", threads: Optional[int] = None) -> None:
        layers = cast("list[DecoderLayer]", list(stack.layers))
        matrices = [_matrices(layer) for layer in layers]
        if any(m is None for m in matrices):
            raise ValueError("every layer needs 8-bit NBitsLinear matrices")
        mats = cast("list[list[nbits.NBitsLinear]]", matrices)
        threads = threads or torch.get_num_threads()
        eps = stack.cfg.rms_norm_eps
        self.hidden = stack.cfg.hidden_size
        self.qkv_width = mats[0][0].out_features
        self.attn_width = mats[0][1].in_features

        head = _Graph("head_")
        normed, _ = head.norm(head.input(self.hidden), layers[0].input_layernorm.weight, eps)
        head.output(head.matmul(normed, mats[0][0]), self.qkv_width)
        self.head = head.session(threads)

        self.blocks: list[int] = []
        # Output widths of each layer's graph: (x, next qkv), the last one only the final-norm hidden states.
        self.widths = [[self.hidden, self.qkv_width]] * (len(layers) - 1) + [[self.hidden]]
        for i, (layer, (_, o_proj, gate_up, down)) in enumerate(zip(layers, mats)):
            g = _Graph(f"l{i}_")
            a, x = g.input(self.attn_width), g.input(self.hidden)
            normed, h = g.norm(g.matmul(a, o_proj), layer.post_attention_layernorm.weight, eps, skip=x)
            mixed = g.swiglu(g.matmul(normed, gate_up), layer.mlp.intermediate)
            last = i == len(layers) - 1
            weight = stack.norm.weight if last else layers[i + 1].input_layernorm.weight
            normed, x_next = g.norm(g.matmul(mixed, down), weight, eps, skip=h)
            if last:
                g.output(normed, self.hidden)  # the stack's output: final-norm hidden states
            else:
                g.output(x_next, self.hidden)
                g.output(g.matmul(normed, mats[i + 1][0]), self.qkv_width)
            self.blocks.append(g.session(threads))
        for m in (m for layer in mats for m in layer):
            m.release_weights()
        # The sessions hold the weights: they go with this object (an engine unloaded by the model pool).
        weakref.finalize(self, _release_all, [self.head, *self.blocks])

    def decode(
        self,
        stack: "DecoderStack",
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: "KVCache",
        at: "int | torch.Tensor",
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """DecoderStack.decode's layer loop, x [B, H] -> final-norm [B, H]: a call per row and layer."""
        return self._layers(stack, x, 1, lambda attn, qkv, i: attn.attend(qkv, cos, sin, cache, i, at, mask))

    def prefill(
        self,
        stack: "DecoderStack",
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: "KVCache",
        slot: int,
        start: int,
    ) -> torch.Tensor:
        """DecoderStack.prefill's layer loop (x [n, T, H] -> final-norm [n, T, H]), one call per request."""
        n, t, hidden = x.shape

        def attend(attn: "Attention", qkv: torch.Tensor, i: int) -> torch.Tensor:
            heads = attn.attend_prefill(qkv.view(n, t, -1), cos, sin, cache, i, slot, start)
            return heads.reshape(n * t, -1)

        return self._layers(stack, x.reshape(n * t, hidden), t, attend).view(n, t, hidden)

    def _layers(
        self,
        stack: "DecoderStack",
        rows: torch.Tensor,
        group: int,
        attend: Callable[["Attention", torch.Tensor, int], torch.Tensor],
    ) -> torch.Tensor:
        """rows [M, H] through the head graph, then per layer `attend` (fused qkv -> attention output, in
        PyTorch) and the layer's graph; `group` rows per graph call (run_graph)."""
        (qkv,) = run_graph([rows], self.head, [self.qkv_width], group)
        for i, layer in enumerate(cast("list[DecoderLayer]", list(stack.layers))):
            outs = run_graph([attend(layer.self_attn, qkv, i), rows], self.blocks[i], self.widths[i], group)
            rows, qkv = outs[0], outs[-1]
        return rows


def _release_all(handles: list[int]) -> None:
    for handle in handles:
        nbits.release(handle)


def attach(stack: "DecoderStack", threads: Optional[int] = None) -> bool:
    """Gives `stack` its LayerBlocks where it qualifies (fp32 CPU, every layer's matrices 8-bit NBitsLinear
    with their weights not yet handed to a session); returns whether it did."""
    layers = cast("list[DecoderLayer]", list(stack.layers))
    if stack.norm.weight.dtype != torch.float32 or not layers or any(_matrices(la) is None for la in layers):
        return False
    stack.blocks = LayerBlocks(stack, threads)
    stack.version += 1  # traced steps are retaken
    _LOGGER.debug("%d layers run as %d onnxruntime graphs", len(layers), len(layers) + 1)
    return True
