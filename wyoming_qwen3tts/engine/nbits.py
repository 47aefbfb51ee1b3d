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
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

_LOGGER = logging.getLogger(__name__)

BLOCK = 32
ACCURACY_LEVEL = 4  # int8 activations: 2x faster than fp32 activations (accuracy_level 0) at these shapes
_SESSIONS: list[Any] = []  # index = the handle passed to the custom op


def available() -> bool:
    """onnxruntime and onnx are importable (the `cpu4bit` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


@torch.library.custom_op("qwen3tts::nbits_mm", mutates_args=())
def nbits_mm(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """x [M, K] float32 -> [M, N] float32 through session `handle`."""
    out = _SESSIONS[handle].run(None, {"x": x.contiguous().numpy()})[0]
    return torch.from_numpy(out)


@nbits_mm.register_fake
def _(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], out_features)


def quantize_blocks(w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """w [N, K] (K % 32 == 0) -> packed codes [N, K/32, 16] uint8 (low nibble first), scales [N, K/32]."""
    n, k = w.shape
    blocks = w.float().reshape(n, k // BLOCK, BLOCK)
    scale = (blocks.abs().amax(dim=-1) / 7).clamp(min=torch.finfo(torch.float32).tiny)
    codes = (torch.round(blocks / scale[..., None]).clamp_(-8, 7) + 8).to(torch.uint8)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed.contiguous().numpy(), scale.contiguous().numpy()


def _session(packed: np.ndarray, scales: np.ndarray, n: int, k: int, threads: int) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(
        "MatMulNBits",
        ["x", "b", "scales"],
        ["y"],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=4,
        block_size=BLOCK,
        accuracy_level=ACCURACY_LEVEL,
    )
    graph = helper.make_graph(
        [node],
        "nbits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        initializer=[
            numpy_helper.from_array(packed, "b"),
            numpy_helper.from_array(scales.reshape(-1), "scales"),
        ],
    )
    return session_of(graph, threads)


def session_of(graph: Any, threads: int) -> Any:
    """An onnxruntime CPU session over ``graph`` (MatMulNBits nodes), tuned for a shared small host."""
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
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class NBitsLinear(nn.Module):
    """A Linear with 4-bit block-32 weights, run by onnxruntime's MatMulNBits (float32 in and out)."""

    def __init__(self, linear: nn.Linear, threads: Optional[int] = None) -> None:
        super().__init__()
        n, k = linear.weight.shape
        if k % BLOCK:
            raise ValueError(f"in_features {k} is not a multiple of {BLOCK}")
        self.in_features, self.out_features = k, n
        packed, scales = quantize_blocks(linear.weight.detach())
        self.nbytes = packed.nbytes + scales.nbytes
        self.handle = len(_SESSIONS)
        _SESSIONS.append(_session(packed, scales, n, k, threads or torch.get_num_threads()))
        self.bias: Optional[torch.Tensor]
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        out = nbits_mm(x.float(), self.handle, self.out_features)
        if self.bias is not None:
            out = out + self.bias
        return out if dtype == torch.float32 else out.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mm(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The weight the kernel multiplies with (float32 [N, K]): the identity through it (the 8-bit
        activation rounding is exact for one-hot rows)."""
        eye = torch.eye(self.in_features)
        return nbits_mm(eye, self.handle, self.out_features).t().contiguous()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits=4, block={BLOCK}"
