"""4-bit weights through onnxruntime's `MatMulNBits` (MLAS) on CPUs without PyTorch's AVX-512 int4 kernel.

PyTorch's int4 CPU kernel (`quant.Int4Linear`) is vectorised for AVX-512 only, so on the CPUs most add-on
users own (AVX2: Intel N100, Ryzen <= 5000; ARM64: Raspberry Pi 5) `quantize=int4` used to fall back to int8.
onnxruntime's MatMulNBits ships AVX2 and NEON kernels for 4-bit weights times 8-bit activations
(`accuracy_level=4`); measured at talker shapes, batch 1, 2 threads, AVX2-limited (bench/kernels_4bit.py,
bench/RESULTS.md) it moves a talker step's matrices ~2-3x faster than fbgemm's int8 Linear.

Each matrix becomes a one-node ONNX graph (built with the optional `onnx` package: `pip install .[cpu4bit]`)
run by its own InferenceSession. Weights: symmetric 4-bit per block of 32 input features (scale = block
absmax / 7, the kernel's default zero point 8). The session is called through a PyTorch custom op
(`qwen3tts::nbits_mm`), so the traced decode steps (jit.py) record the call instead of its result.
"""

from __future__ import annotations

import importlib.util
import logging
import weakref
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

_LOGGER = logging.getLogger(__name__)

BLOCK = 32  # 4-bit weights
BLOCK_8BIT = 64  # 8-bit weights (`quantize=int8` with the onnxruntime kernel): measured in bench/RESULTS.md
ACCURACY_LEVEL = 4  # int8 activations: 2x faster than fp32 activations (accuracy_level 0) at these shapes
ROWS = 1024  # rows quantized at a time (quantize_blocks)
_SESSIONS: list[Any] = []  # index = the handle passed to the custom op


def available() -> bool:
    """onnxruntime and onnx are importable (the `cpu4bit` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def register(session: Any) -> int:
    """A handle for ``session`` (what the custom ops take); released when its owner goes (`release`)."""
    _SESSIONS.append(session)
    return len(_SESSIONS) - 1


def session(handle: int) -> Any:
    return _SESSIONS[handle]


def release(handle: int) -> None:
    _SESSIONS[handle] = None


def _run(x: torch.Tensor, handle: int) -> torch.Tensor:
    return torch.from_numpy(_SESSIONS[handle].run(None, {"x": x.contiguous().numpy()})[0])


# `qwen3tts::nbits_mm(x [M, K] float32, handle, out_features) -> [M, N] float32` through session `handle`.
# Registered with torch.library.Library rather than `custom_op`: the dispatcher call costs ~13 us instead of
# ~35 us, and a frame makes ~430 of them with one session per matrix (8-bit talker and code predictor; ~135
# with ortblocks.py's graphs, which are called the same way).
LIBRARY = torch.library.Library("qwen3tts", "DEF")  # ortblocks.py defines its op here too
LIBRARY.define("nbits_mm(Tensor x, int handle, int out_features) -> Tensor")
LIBRARY.impl("nbits_mm", lambda x, handle, out_features: _run(x, handle), "CPU")


@torch.library.register_fake("qwen3tts::nbits_mm")
def _(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], out_features)


def nbits_mm(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """The op while tracing (jit.py records the call, not its result); the session directly otherwise."""
    if torch.jit.is_tracing():
        return torch.ops.qwen3tts.nbits_mm(x, handle, out_features)
    return _run(x, handle)


def quantize_blocks(w: torch.Tensor, bits: int = 4, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """w [N, K] (K % block == 0) -> codes [N, K/block, block*bits/8] uint8, scales [N, K/block] float32.

    Symmetric per block (scale = block absmax / (2^(bits-1) - 1)), stored with the kernel's default zero
    point 2^(bits-1): 4-bit codes 1..15 around 8, two per byte (low nibble first); 8-bit codes 1..255.
    ROWS rows at a time, few ops each: whole-matrix float temporaries left the C heap's high-water mark far
    above what stays live (peak RSS of a load +60 %)."""
    if bits not in (4, 8):
        raise ValueError(f"bits={bits}: MatMulNBits weights here are 4 or 8 bits")
    n, k = w.shape
    codes = torch.empty(n, k // block, block * bits // 8, dtype=torch.uint8)
    scales = torch.empty(n, k // block)
    for start in range(0, n, ROWS):
        rows = w[start : start + ROWS].detach()
        codes[start : start + ROWS], scales[start : start + ROWS] = _codes(rows, bits, block)
    return codes.numpy(), scales.numpy()


def _codes(w: torch.Tensor, bits: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, k = w.shape
    top, zero = 2 ** (bits - 1) - 1, 2 ** (bits - 1)
    blocks = w.float().reshape(-1, block)
    low, high = torch.aminmax(blocks, dim=-1)
    scale = (torch.maximum(-low, high) / top).clamp_(min=torch.finfo(torch.float32).tiny)
    q = blocks.div(scale[:, None]).round_().to(torch.int8)  # -top..top: |w| <= absmax
    # Signed codes -> the kernel's unsigned codes around `zero` (8-bit: flip the sign bit).
    codes = q.add_(zero).view(torch.uint8) if bits == 4 else q.view(torch.uint8).bitwise_xor_(0x80)
    codes = codes.reshape(n, k // block, block)
    if bits == 4:
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return codes, scale.reshape(n, k // block)


def matmul_node(
    x: str, y: str, prefix: str, packed: np.ndarray, scales: np.ndarray, n: int, k: int, bits: int, block: int
) -> tuple[Any, dict[str, np.ndarray]]:
    """A MatMulNBits node y = x @ W^T and its weight initializers (named ``prefix`` + b / scales)."""
    from onnx import helper

    weights = {f"{prefix}b": packed, f"{prefix}scales": scales.reshape(-1)}
    node = helper.make_node(
        "MatMulNBits",
        [x, *weights],
        [y],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=bits,
        block_size=block,
        accuracy_level=ACCURACY_LEVEL,
    )
    return node, weights


def _session(
    packed: np.ndarray, scales: np.ndarray, n: int, k: int, threads: int, bits: int, block: int
) -> Any:
    from onnx import TensorProto, helper

    node, weights = matmul_node("x", "y", "", packed, scales, n, k, bits, block)
    graph = helper.make_graph(
        [node],
        "nbits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        initializer=[_external(name, array) for name, array in weights.items()],
    )
    return session_of(graph, threads, weights)


def _external(name: str, array: np.ndarray) -> Any:
    """An initializer whose data the session is handed directly (`add_external_initializers`): a graph with
    the bytes inside keeps them for the session's life beside MLAS's packed copy (measured 2.2x the weight
    bytes per session; handed over: 1.2x, the packed copy and its block sums)."""
    from onnx import TensorProto, helper

    tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", f"{name}.bin"), ("offset", "0"), ("length", str(array.nbytes))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def session_of(graph: Any, threads: int, external: Optional[dict[str, np.ndarray]] = None) -> Any:
    """An onnxruntime CPU session over ``graph`` (MatMulNBits nodes), tuned for a shared small host.
    `external`: the data of the graph's external initializers (see `_external`), by name."""
    import onnxruntime as ort
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Threads sleep between calls instead of spinning: other add-ons share the cores (see platform_env.py).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No per-session memory arena: each of the ~50-150 sessions would keep the largest buffers it ever needed
    # (a prompt's activations) for good: +180 MB live, +70 MB resident after one request (issue 24).
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 3
    if external:
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in external.values()]
        opts.add_external_initializers(list(external), values)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class NBitsLinear(nn.Module):
    """A Linear with block-quantized weights (4-bit blocks of 32, or 8-bit blocks of `BLOCK_8BIT`), run by
    onnxruntime's MatMulNBits with 8-bit activations quantized per block (float32 in and out).

    Its session is made on first use (or by `materialize`), so that a layer's matrices can instead be
    handed to one larger graph (ortblocks.py, `node`): each weight is prepacked by exactly one session."""

    def __init__(
        self, linear: nn.Linear, threads: Optional[int] = None, bits: int = 4, block: Optional[int] = None
    ) -> None:
        super().__init__()
        n, k = linear.weight.shape
        block = block or (BLOCK if bits == 4 else BLOCK_8BIT)
        if not fits(k, block):
            raise ValueError(f"in_features {k} is not a multiple of {block}")
        self.in_features, self.out_features, self.bits, self.block = k, n, bits, block
        self._weights: Optional[tuple[np.ndarray, np.ndarray]] = quantize_blocks(
            linear.weight.detach(), bits, block
        )
        self.nbytes = sum(a.nbytes for a in self._weights)
        self._threads = threads or torch.get_num_threads()
        self._handle: Optional[int] = None
        self.taken = False  # the weights went into another graph (`node`): this module cannot run
        self.bias: Optional[torch.Tensor]
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def session_handle(self) -> int:
        """The handle of this matrix's own session (made now if need be). A method, not a property: the
        tracer probes every attribute of a module (hasattr), which must not make or refuse a session."""
        if self._handle is None:
            self.materialize()
        assert self._handle is not None
        return self._handle

    def materialize(self) -> None:
        """Makes this matrix's own session now (load time); drops the quantized arrays it was built from."""
        if self._handle is not None:
            return
        if self.taken or self._weights is None:
            raise RuntimeError("this matrix was fused into an onnxruntime graph (ortblocks.py)")
        packed, scales = self._weights
        n, k = self.out_features, self.in_features
        self._handle = register(_session(packed, scales, n, k, self._threads, self.bits, self.block))
        self._weights = None
        # The session (and its packed weights) goes with the module: an engine unloaded by the model pool
        # must not leave its weights behind.
        weakref.finalize(self, release, self._handle)

    def node(self, x: str, y: str, prefix: str) -> tuple[Any, dict[str, np.ndarray]]:
        """This matrix as a MatMulNBits node of another graph; the module gives up running it itself."""
        if self._weights is None or self.bias is not None:
            raise RuntimeError("only an unused bias-free matrix can join another graph")
        self.taken = True
        return matmul_node(
            x, y, prefix, *self._weights, self.out_features, self.in_features, self.bits, self.block
        )

    def release_weights(self) -> None:
        """After `node`'s graph has its session: the arrays are the session's (prepacked), not ours."""
        if self.taken:
            self._weights = None

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, K] -> [B, N], one row per request of a decode step: each row run on its own, as MLAS picks
        another kernel for several rows whose rounding differs (seeded requests reproduce alone or batched).
        """
        if x.shape[0] > 1:
            return torch.cat([self.mm(row) for row in x.split(1)])
        return self._call(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [1, T, K] (one request's prompt): one call; [B, T, K]: one call per request."""
        if x.dim() == 3 and x.shape[0] > 1:
            return torch.cat([self.forward(part) for part in x.split(1)])
        return self._call(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], self.out_features)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] -> [M, N] in one kernel call, in x's dtype."""
        out = nbits_mm(x.float(), self.session_handle(), self.out_features)
        if self.bias is not None:
            out = out + self.bias
        return out if x.dtype == torch.float32 else out.to(x.dtype)

    def dequantized(self) -> torch.Tensor:
        """The weight the kernel multiplies with (float32 [N, K]): the identity through it (the 8-bit
        activation rounding is exact for one-hot rows)."""
        eye = torch.eye(self.in_features)
        return nbits_mm(eye, self.session_handle(), self.out_features).t().contiguous()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"block={self.block}"
        )


_CHECKED: dict[int, bool] = {}


def kernel_ok(bits: int = 8) -> bool:
    """Once per process: does this CPU's MatMulNBits kernel multiply a single row (the decode shape) right?
    Its kernels are picked from CPUID (AVX2 / AVX-512 VNNI / NEON) and only some were measured here (MLAS has
    had an AVX2-only single-row bug, onnxruntime issue 29853), so a wrong result falls back instead of
    speaking noise. A random 192 x 512 matrix against a plain matmul of its dequantized weight: the only
    difference allowed is the 8-bit activation rounding per block (cosine > 0.999)."""
    if bits not in _CHECKED:
        gen = torch.Generator().manual_seed(0)
        linear = nn.Linear(512, 192, bias=False)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(192, 512, generator=gen))
        x = torch.randn(1, 512, generator=gen)
        layer = NBitsLinear(linear, threads=1, bits=bits)
        assert layer._weights is not None  # the arrays its session is made from (on the first call below)
        codes, scales = layer._weights
        if bits == 4:
            codes = np.stack([codes & 0xF, codes >> 4], axis=-1)
        weight = torch.from_numpy(codes.astype(np.float32)).reshape(192, -1, layer.block) - 2 ** (bits - 1)
        exact = x @ (weight * torch.from_numpy(scales)[..., None]).reshape(192, 512).t()
        cos = float(nn.functional.cosine_similarity(layer.mm(x).flatten(), exact.flatten(), dim=0))
        _CHECKED[bits] = cos > 0.999
        if not _CHECKED[bits]:
            _LOGGER.warning(
                "onnxruntime's %d-bit MatMulNBits is wrong on this CPU (cosine %.4f): not used", bits, cos
            )
    return _CHECKED[bits]


def fits(in_features: int, block: int) -> bool:
    """MatMulNBits takes power-of-two blocks of 16 and more that divide K."""
    return block >= 16 and block & (block - 1) == 0 and in_features % block == 0
