"""Where and in which precision models run: device choice, dtype policy, thread setup."""

from __future__ import annotations

import functools
import os

import torch

from distilkit.errors import UserError

DTYPES = {"auto", "float32", "bfloat16", "float16"}


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AMX tiles or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


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
        UserError: for a dtype name outside ``auto|float32|bfloat16|float16``.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
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
