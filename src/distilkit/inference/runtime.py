"""Where and in which precision models run: device choice, dtype policy, thread setup, and heap
trimming for long-running processes."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from distilkit.errors import UserError

DTYPES = {"auto", "float32", "bfloat16", "float16"}
# Not a torch dtype: int8 GEMMs - PyTorch's oneDNN engine (distilkit.inference.quantized) on a CPU
# with int8 dot products, else ONNX Runtime's dynamic int8 graph of the model (distilkit.export.cache).
INT8 = "int8"


# The CPU features that decide the engine: native bf16 (AMX tiles, AVX512-BF16) and int8 dot products.
CPU_FEATURES = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


@functools.cache
def cpu_features() -> tuple[str, ...]:
    """Which of ``CPU_FEATURES`` this CPU has (from /proc/cpuinfo; none where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(f.read().split())
    except OSError:
        return ()
    return tuple(flag for flag in CPU_FEATURES if flag in flags)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AMX tiles or AVX512-BF16)."""
    return any(flag in cpu_features() for flag in ("amx_bf16", "avx512_bf16"))


@dataclass(frozen=True)
class Engine:
    """What runs a model: ``torch`` in a torch dtype, or ``onnx`` (ONNX Runtime) in float32 or int8."""

    backend: str
    precision: str
    reason: str

    def describe(self) -> str:
        name = "PyTorch" if self.backend == "torch" else "ONNX Runtime"
        return f"{name} {self.precision} ({self.reason})"


def choose_engine(dtype: str | torch.dtype, device: torch.device, backend: str | None = None) -> Engine:
    """The engine for a (dtype, device, backend) request; ``dtype="auto"`` picks by the hardware.

    ``auto``: CUDA -> bf16 (fp16 without bf16); a CPU with AMX/AVX512-BF16 -> PyTorch bf16; another
    CPU -> PyTorch fp32 on prepacked oneDNN GEMMs (``prepack_linears``: level with or ahead of ONNX
    Runtime's fp32 graph, ``benchmarks/runtimes.py``, and no export), or, on a torch build without
    oneDNN, ONNX Runtime's fp32 graph when it is installed. ``int8`` is PyTorch's oneDNN int8 engine
    where the CPU has int8 dot products (``can_run_int8``), else (or with ``backend="onnx"``) ONNX
    Runtime's dynamic int8 graph; ``backend="onnx"`` alone runs ONNX Runtime in fp32. An explicit
    ``float32`` with no backend stays PyTorch: the reference engine, equal to the transformers pipelines.

    Raises:
        UserError: an unknown dtype or backend, or a combination no engine runs.
    """
    if isinstance(dtype, torch.dtype):
        return Engine(backend or "torch", str(dtype).removeprefix("torch."), "requested")
    if backend not in (None, "torch", "onnx"):
        raise UserError(f"--backend must be torch or onnx, got {backend!r}")
    if dtype == INT8:
        if device.type != "cpu":
            raise UserError("dtype int8 runs on the CPU: drop --device or choose another --dtype")
        if backend != "onnx" and can_run_int8(device):
            found = "/".join(f for f in ("amx_int8", "avx512_vnni") if _has(f))
            return Engine("torch", INT8, f"requested; oneDNN u8 x s8 GEMMs on {found}")
        if backend == "torch":
            raise UserError("dtype int8 with --backend torch needs oneDNN's int8 GEMMs and a CPU with "
                            "AVX512-VNNI or AMX; drop --backend to run ONNX Runtime's int8 graph")
        return Engine("onnx", INT8, "requested; ONNX Runtime dynamic int8"
                      + (" on VNNI" if _has("avx512_vnni") else ""))
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES | {INT8})}, got {dtype!r}")
    if backend == "onnx":
        if dtype not in ("auto", "float32") or device.type != "cpu":
            raise UserError(f"--backend onnx runs float32 or int8 on the CPU, not {dtype} on {device.type}")
        return Engine("onnx", "float32", "requested")
    resolved = str(resolve_dtype(dtype, device)).removeprefix("torch.")
    if dtype != "auto":
        return Engine("torch", resolved, "requested")
    if device.type == "cuda":
        return Engine("torch", resolved, "auto: CUDA")
    if cpu_has_fast_bf16():
        found = "/".join(f for f in ("amx_bf16", "avx512_bf16") if _has(f))
        return Engine("torch", resolved, f"auto: the CPU has {found}")
    if can_prepack(torch.float32, device):
        return Engine("torch", resolved, "auto: no fast bf16 on this CPU; fp32 on prepacked oneDNN GEMMs")
    if backend is None and importlib.util.find_spec("onnxruntime") is not None:
        return Engine("onnx", "float32", "auto: no fast bf16 on this CPU; its fastest exact engine")
    return Engine("torch", resolved, "auto: no fast bf16 on this CPU")


def can_run_int8(device: torch.device) -> bool:
    """True where ``distilkit.inference.quantized`` runs: oneDNN's int8 GEMMs on a VNNI or AMX CPU.

    Without int8 dot products oneDNN's u8 x s8 GEMM is no faster than ONNX Runtime's, which is
    then the int8 engine.
    """
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and all(hasattr(torch.ops.onednn, op) for op in ("qlinear_pointwise", "qlinear_prepack"))
            and any(_has(f) for f in ("amx_int8", "avx512_vnni")))


def int8_compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the non-GEMM work (attention, LayerNorm, heads) of the torch int8 engine."""
    return torch.bfloat16 if cpu_has_fast_bf16() and device.type == "cpu" else torch.float32


def _has(flag: str) -> bool:
    return flag in cpu_features()


_announced: set[Engine] = set()


def announce(engine: Engine, model: str) -> None:
    """Print the engine on stderr the first time a process uses it (start-up of predict/serve/batch)."""
    if engine not in _announced:
        _announced.add(engine)
        print(f"engine: {engine.describe()} for {model}", file=sys.stderr, flush=True)


def resolve_device(device: str | int | torch.device | None) -> torch.device:
    """Turn a user device spec into a torch device; None picks CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, int):
        return torch.device("cpu") if device < 0 else torch.device(f"cuda:{device}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was requested but CUDA is not available on this machine")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Apply the precision policy: "auto" is bf16 on AMX/AVX512-BF16 CPUs and on CUDA, else fp32.

    Raises:
        UserError: for a dtype name outside ``auto|float32|bfloat16|float16|int8``.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == INT8:  # int8 weights and activations inside the ONNX graph; its inputs and outputs are fp32
        return torch.float32
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES | {INT8})}, got {dtype!r}")
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return getattr(torch, dtype)


_threads_set = False


def set_threads(num_threads: int | None = None) -> int:
    """Set the intra-op thread count once per process (default: the CPUs this process may use)."""
    global _threads_set
    if num_threads is None:
        if _threads_set:
            return torch.get_num_threads()
        env = os.environ.get("DISTILKIT_NUM_THREADS")
        num_threads = int(env) if env else len(os.sched_getaffinity(0))
    if num_threads < 1:
        raise UserError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    _threads_set = True
    return num_threads


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``); False where there is no glibc.

    Passes of ever-changing shapes free and allocate activations of ever-changing sizes; glibc keeps
    the freed pages, so a long-running server's RSS creeps up without it. (PyTorch's CPU kernel caches,
    ideep's ``LRU_CACHE_CAPACITY`` and oneDNN's ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, 1,024 kernels each,
    also fill with new shapes, then stay at that size: capping them lower cost small passes ~15%.)
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def compile_encoder(model: torch.nn.Module) -> None:
    """Compile the model's encoder in place with TorchInductor (dynamic shapes, frozen weights).

    The encoder is where the time goes; compiling it fuses bias/GELU/LayerNorm/residual ops
    around the matmuls. Heads stay eager, so task handlers that call ``model.base_model`` or
    the full model both hit the compiled encoder. Costs ~20 s on the first batch; later batch
    shapes reuse the dynamic graph.
    """
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights are constants at inference: lets Inductor prepack them
    model.base_model.compile(dynamic=True)


# (linear, activation) attribute pairs of the encoders' feed-forward blocks: DistilBERT, BERT/RoBERTa.
_FFN_PAIRS = (("lin1", "activation"), ("dense", "intermediate_act_fn"))
# The dtypes whose weights ``PackedLinear`` keeps in oneDNN's layout.
PACKED_DTYPES = (torch.float32, torch.bfloat16)


def can_prepack(dtype: torch.dtype, device: torch.device) -> bool:
    """True where ``prepack_linears`` applies: a CPU with oneDNN, in fp32, or in bf16 where it is native.

    fp32 counts too: oneDNN's fp32 GEMM on a prepacked weight is exact fp32 arithmetic and, on
    the 2-core AMD Zen 4 CI machine, 2.2x the MKL GEMM behind ``F.linear`` (440 vs 198 GFLOP/s
    at 2000x768x3072, ``benchmarks/engine_ab.py`` measures it end to end).
    """
    return (device.type == "cpu" and dtype in PACKED_DTYPES and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and (dtype == torch.float32 or cpu_has_fast_bf16()))


class PackedLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose fp32 or bf16 weight is also held in oneDNN's blocked layout for inference.

    The GEMM then skips re-packing the weight on every call, and the feed-forward GELU runs inside
    the GEMM's epilogue (``fuse_gelu``). ``weight`` and ``bias`` stay ordinary parameters, so
    ``state_dict`` and ``save_pretrained`` are unchanged; the packed copy is rebuilt when the weight
    is replaced or changed in place (``load_state_dict``, ``.to(bfloat16)``), and anything else
    (input and weight of different or other dtypes, other devices, gradients) runs ``F.linear``.
    """

    def __init__(self, linear: torch.nn.Linear, fuse_gelu: bool = False):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None,
                         device="meta")
        self.weight, self.bias = linear.weight, linear.bias
        self.attr = "gelu" if fuse_gelu else "none"
        self._packed: tuple[tuple[int, int], torch.Tensor] | None = None
        self._packed_weight()  # pack at load, not in the first request

    def _packed_weight(self) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version)
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None))
        return self._packed[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (x.dtype != w.dtype or w.dtype not in PACKED_DTYPES or x.device.type != "cpu"
                or (torch.is_grad_enabled() and (w.requires_grad or x.requires_grad))):
            y = torch.nn.functional.linear(x, w, self.bias)
            return torch.nn.functional.gelu(y) if self.attr == "gelu" else y
        bias = None if self.bias is None else self.bias.detach()
        return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight(), bias, self.attr, [], "none")


def is_exact_gelu(act: torch.nn.Module | None) -> bool:
    """True when ``act`` computes the exact (erf) GELU, the one oneDNN's GEMM epilogues apply."""
    probe = torch.linspace(-6, 6, 241)
    try:
        return torch.equal(act(probe), torch.nn.functional.gelu(probe))
    except (TypeError, RuntimeError, ValueError):  # one that cannot take a plain tensor is not GELU
        return False


def prepack_linears(model: torch.nn.Module) -> int:
    """Swap the model's fp32/bf16 ``nn.Linear`` layers for ``PackedLinear`` in place; returns how many.

    Each feed-forward block's first linear in the encoder also takes over its exact (erf) GELU.
    Measured on 2 Zen 4 cores (``benchmarks/engine_ab.py``, same weights): bf16 1.09-1.16x; fp32
    2.05-2.23x, where it also replaces MKL's GEMM, at half of oneDNN's fp32 rate on AMD CPUs.
    Heads are packed too: the masked-LM vocabulary projection (768 x 28,996 for distilbert-base-cased)
    reads its whole weight for every pass, and packed it takes 2.0 instead of 3.9 ms for one masked
    row in bf16 (4.4 instead of 8.0 in fp32; 9.3 instead of 29.8 for 32 rows in fp32), a seventh
    of a single sentence's latency. Its weight is tied to the word embeddings, so the packed copy
    is extra memory: vocabulary x hidden in the model's dtype (~44 MB in bf16 here).
    """
    encoder = getattr(model, "base_model", model)
    count = 0
    for module in list(encoder.modules()):
        for lin_name, act_name in _FFN_PAIRS:
            lin, act = getattr(module, lin_name, None), getattr(module, act_name, None)
            if (type(lin) is torch.nn.Linear and lin.weight.dtype in PACKED_DTYPES
                    and isinstance(act, torch.nn.Module) and is_exact_gelu(act)):
                setattr(module, lin_name, PackedLinear(lin, fuse_gelu=True))
                setattr(module, act_name, torch.nn.Identity())
                count += 1
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype in PACKED_DTYPES:
                setattr(module, name, PackedLinear(child))
                count += 1
    return count


BMM_ATTENTION = "distilkit_bmm"
# PyTorch's bf16 softmax is fast on rows of a multiple of its AVX-512 vector (32 values) and ~4x
# slower on others: 0.58 ms for (384, 23, 23) scores (32 sentences of 23 tokens, 12 heads) against
# 0.13 for (198, 32, 32). The scores of a padded batch are laid out that wide.
SCORE_MULTIPLE = 32


def bmm_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention as two batched GEMMs around a softmax, for transformers' attention interface.

    On CPUs with native bf16 the scale and the mask ride in the first GEMM (``baddbmm``), and the
    pair makes bf16 QA (~184-token windows) ~1.1x faster end to end than PyTorch's fused CPU
    attention kernel (``benchmarks/engine_ab.py``), with the same agreement with fp32. In fp32 the
    fused kernel is the faster. Inference only (no dropout, no weights out).
    """
    b, h, t, d = query.shape
    s = key.shape[2]
    scale = scaling if scaling is not None else d ** -0.5
    q, k, v = query.reshape(b * h, t, d), key.reshape(b * h, s, d), value.reshape(b * h, s, d)
    if attention_mask is None:
        probs = torch.softmax(torch.bmm(q, k.transpose(1, 2)).mul_(scale), dim=-1)
    else:
        if attention_mask.dtype == torch.bool:  # True = attend
            attention_mask = torch.zeros(attention_mask.shape, dtype=q.dtype).masked_fill_(
                ~attention_mask, torch.finfo(q.dtype).min)
        # The mask is broadcast once into the scores' buffer, and the GEMM accumulates onto it in
        # place: out-of-place ``baddbmm`` would copy the expanded bias a second time. In bf16 the
        # buffer's rows are SCORE_MULTIPLE wide, the keys that are not there masked out (weight 0).
        width = -(-s // SCORE_MULTIPLE) * SCORE_MULTIPLE if q.dtype == torch.bfloat16 else s
        scores = torch.empty((b * h, t, width), dtype=q.dtype, device=q.device)
        if width > s:
            scores[..., s:] = torch.finfo(q.dtype).min
        scores.view(b, h, t, width)[..., :s].copy_(attention_mask)
        scores[..., :s].baddbmm_(q, k.transpose(1, 2), alpha=scale)
        probs = torch.softmax(scores, dim=-1)[..., :s]
    out = torch.bmm(probs, v)
    return out.reshape(b, h, t, d).transpose(1, 2), None


def use_bmm_attention(model: torch.nn.Module) -> bool:
    """Switch ``model`` to ``bmm_attention`` where transformers' attention interface allows it.

    The attention function is registered together with its mask builder (transformers' additive
    ``eager_mask``: 0 where a key counts, the dtype's minimum on padding, ``None`` for a batch with
    no padding): an implementation name without a mask builder gets no mask at all, so padded keys
    would be attended to.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(BMM_ATTENTION, bmm_attention)
    AttentionMaskInterface.register(BMM_ATTENTION, eager_mask)
    try:
        model.set_attn_implementation(BMM_ATTENTION)
    except (AttributeError, ValueError):  # a model class without the interface keeps its own
        return False
    return True
