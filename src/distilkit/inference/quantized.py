"""PyTorch's int8 engine on oneDNN: every encoder GEMM as u8 activations x s8 weights (VNNI).

``dtype="int8"`` on a CPU with int8 dot products (AVX512-VNNI, AMX) runs the model this way:

- weights: signed int8, one scale per output channel (symmetric), prepacked for oneDNN once at load;
- activations: unsigned int8 with one scale and zero point per GEMM input, measured on the batch
  (dynamic, like ONNX Runtime's ``DynamicQuantizeMatMul``); the query, key and value projections
  read the same input and share one quantisation of it;
- the feed-forward block's first GEMM applies GELU in its epilogue and writes **u8** straight into
  the second GEMM, with a static scale calibrated at load (min/max of the GELU outputs over
  ``CALIBRATION_TEXTS`` or the caller's texts): its 4x-wide output is never written in 16/32 bits;
- the attention output projection reads a context whose channels differ in range by orders of
  magnitude on trained weights; calibration measures each channel's peak and ``smooth`` divides
  it out of the value projection and into the output projection's weight (SmoothQuant's
  migration, exact in float, free at run time): on the real QA teacher of examples/real this took
  int8's F1 cost from 1.23 to 0.39;
- everything else (embeddings, attention scores and softmax, residual adds, LayerNorm, heads)
  stays in the model's dtype (bf16 where the CPU has it), and the Predictor's other advantages
  (last layer only where a head reads it, length-aware batches) are kept.

Measured on 2 Zen 4 cores against ONNX Runtime's dynamic int8 graph of the same weights
(``benchmarks/runtimes.py``): see the README's speed table. ``convert`` is inference only.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence

import torch

from distilkit.inference.runtime import is_exact_gelu
from distilkit.inference.selective import encoder_layers

# Generic English of several registers and lengths: enough to see each feed-forward block's
# GELU range; users with a domain of their own pass texts of it (``calibration_texts``).
CALIBRATION_TEXTS: tuple[str, ...] = (
    "The committee will meet on Tuesday to review the budget for the coming year.",
    "She opened the window, and the smell of rain filled the small kitchen.",
    "How many people lived in the city at the end of the nineteenth century?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The match ended in a draw after two goals were disallowed for offside.",
    "Prices rose by 3.2 percent in October, the fastest pace since early 2023.",
    "Who wrote the novel, and in which language was it first published?",
    "Install the package, set the environment variable and restart the server.",
    "The river floods every spring, when snow melts in the mountains to the north.",
    "I honestly thought the film was too long, but the music was wonderful.",
    "The court ruled that the contract was void because one party had been misled.",
    "Add two cups of flour, a pinch of salt and mix until the dough is smooth.",
    "In 1969 the first humans landed on the Moon as part of the Apollo program.",
    "What is the capital of Australia, and why was it chosen over Sydney?",
    "The patient reported mild headaches and was advised to rest and drink water.",
    "Our quarterly revenue grew, although operating costs increased faster than expected.",
    "The old castle stands on a hill overlooking the village and the valley below it.",
    "Neural networks learn representations by adjusting weights to reduce a loss.",
    "This is the worst customer service I have ever experienced; nobody answered.",
    "The orchestra performed Beethoven's Ninth Symphony to a sold-out audience in Vienna.",
    ("Migratory birds travel thousands of kilometres each year between breeding and wintering "
    "grounds, guided by the sun, the stars and the Earth's magnetic field. Scientists tag them "
    "with light transmitters to follow their routes, and the data show that many species stop "
    "at the same wetlands year after year to rest and feed before crossing deserts or seas."),
    ("The company was founded in 1998 by two engineers in a garage in Palo Alto. Its first "
    "product, a search tool for university libraries, attracted investors within months; by "
    "2004 it employed more than three thousand people in offices across Europe and Asia, and "
    "its founders were among the youngest billionaires in the country."),
    ("Parliament passed the bill by 312 votes to 287 after a debate that lasted until midnight. "
    "Opponents argued that the new rules would raise costs for small farms, while the minister "
    "said the reform was needed to meet the targets agreed at the summit in Paris. The upper "
    "house is expected to vote on it next month."),
    ("To reset the device, hold the power button for ten seconds until the light blinks twice, "
    "then release it and wait. If the light turns red, the firmware could not be loaded: "
    "connect the device to a computer, download the latest version from the support page and "
    "follow the instructions in the manual, section 4.2."),
)


def _quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric s8 per output channel: (oneDNN-packed weight, fp32 scales (N,))."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
    qw = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return torch.ops.onednn.qlinear_prepack(qw, None), scale


def u8_params(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of unsigned int8 over [low, high] widened to include 0 (kept exact)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / 255
    return scale, round(-low / scale)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """u8 with one scale and zero point over ``x``'s range (always including 0): (q (N, K), scale, zp).

    One min/max pass and one fused scale-shift-round pass in fp32: ~2x
    ``torch.quantize_per_tensor_dynamic`` on a bf16 input, which must be copied to fp32 first.
    """
    x2 = x.reshape(-1, x.shape[-1])
    lo, hi = torch.aminmax(x2)
    scale, zero = u8_params(lo.item(), hi.item())
    # In place on a fresh fp32 tensor only: ``x`` must stay as it is (``float()`` of fp32 is ``x``).
    scaled = x2.float().mul_(1 / scale) if x2.dtype != torch.float32 else x2 * (1 / scale)
    q = scaled.add_(zero + 0.5).clamp_(0, 255).to(torch.uint8)
    return q, scale, zero


class SharedQuantizer:
    """Quantises an input once for all the GEMMs that read it (query, key and value projections).

    The last input and its quantisation are remembered per thread through a weak reference, so a
    second GEMM on the same tensor object reuses them and a new tensor is always measured afresh.
    """

    def __init__(self):
        self._last = threading.local()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        hit = getattr(self._last, "value", None)
        if hit is not None and hit[0]() is x:
            return hit[1]
        quantized = quantize_rows(x)
        self._last.value = (weakref.ref(x), quantized)
        return quantized


class QuantizedLinear(torch.nn.Module):
    """An ``nn.Linear`` as oneDNN's u8 x s8 GEMM (inference only).

    Args:
        linear: the layer to replace (its weight is quantised; bias kept in fp32).
        out_dtype: the output dtype (the model's), unless ``out_range`` asks for u8.
        quantizer: a ``SharedQuantizer`` shared with sibling GEMMs of the same input.
        gelu: apply the exact GELU in the GEMM's epilogue.
        out_range: (low, high) calibrated output range: write u8 with that static scale (for a
            following ``QuantizedLinear`` built with ``in_params=self.out_params``).
        in_params: (scale, zero point) of a u8 input written by the previous GEMM.
    """

    def __init__(self, linear: torch.nn.Linear, out_dtype: torch.dtype, *,
                 quantizer: SharedQuantizer | None = None, gelu: bool = False,
                 out_range: tuple[float, float] | None = None,
                 in_params: tuple[float, int] | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        packed, scale = _quantize_weight(linear.weight)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.register_buffer("weight_scale", scale, persistent=False)
        self.register_buffer("weight_zero", torch.zeros(self.out_features, dtype=torch.int64),
                             persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias, persistent=False)
        self.out_dtype = out_dtype
        self.quantizer = quantizer or SharedQuantizer()
        self.post_op = "gelu" if gelu else "none"
        self.algorithm = "none" if gelu else ""
        self.out_params = None if out_range is None else u8_params(*out_range)
        self.in_params = in_params

    def extra_repr(self) -> str:
        out = "u8" if self.out_params else str(self.out_dtype).removeprefix("torch.")
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"in={'u8' if self.in_params else 'dynamic u8'}, out={out}, post_op={self.post_op}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            if self.in_params is None:
                raise RuntimeError("a u8 input needs the scale of the GEMM that wrote it")
            q, scale, zero = x.reshape(-1, x.shape[-1]), *self.in_params
        else:
            q, scale, zero = self.quantizer(x)
        if self.out_params is None:
            out_scale, out_zero, out_dtype = 1.0, 0, self.out_dtype
        else:
            (out_scale, out_zero), out_dtype = self.out_params, None
        y = torch.ops.onednn.qlinear_pointwise(
            q, scale, zero, self.packed_weight, self.weight_scale, self.weight_zero, self.bias,
            out_scale, out_zero, out_dtype, self.post_op, [], self.algorithm)
        return y.view(*x.shape[:-1], self.out_features)


def is_encoder_gemm_weight(name: str, dims: int) -> bool:
    """Whether a state_dict entry is a weight ``convert`` holds in int8: a 2-D weight of an encoder
    layer (attention and feed-forward GEMMs; not embeddings, LayerNorms or heads)."""
    return dims == 2 and name.endswith(".weight") and (".layer." in name) and "norm" not in name.lower()


def _linear(owner: torch.nn.Module, name: str) -> torch.nn.Linear | None:
    child = getattr(owner, name, None)
    return child if isinstance(child, torch.nn.Linear) else None


def _layer_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every module inside the encoder layers (not the embeddings, pooler or heads)."""
    return list((encoder_layers(model) or torch.nn.ModuleList()).modules())


def feed_forward_blocks(model: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, str, torch.nn.Module, str,
                                                                   torch.nn.Module, str]]:
    """(first linear's owner, name, activation's owner, name, second linear's owner, name) per block.

    DistilBERT's ``ffn`` (``lin1`` -> ``activation`` -> ``lin2``) and BERT/RoBERTa's layer
    (``intermediate.dense`` -> ``intermediate.intermediate_act_fn`` -> ``output.dense``), with an
    exact GELU only (the one oneDNN's epilogue computes).
    """
    for module in _layer_modules(model):
        if (_linear(module, "lin1") is not None and _linear(module, "lin2") is not None
                and is_exact_gelu(getattr(module, "activation", None))):
            yield module, "lin1", module, "activation", module, "lin2"
        inter, out = getattr(module, "intermediate", None), getattr(module, "output", None)
        if (inter is not None and out is not None and _linear(inter, "dense") is not None
                and _linear(out, "dense") is not None
                and is_exact_gelu(getattr(inter, "intermediate_act_fn", None))):
            yield inter, "dense", inter, "intermediate_act_fn", out, "dense"


def _attention_inputs(model: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, tuple[str, ...]]]:
    """The (module, names) of query/key/value projections that read one input."""
    for module in _layer_modules(model):
        for names in (("q_lin", "k_lin", "v_lin"), ("query", "key", "value")):
            if all(_linear(module, n) is not None for n in names):
                yield module, names


def value_output_pairs(model: torch.nn.Module) -> Iterator[tuple[torch.nn.Linear, torch.nn.Linear]]:
    """(value projection, attention output projection) per layer: each channel of the context the
    second reads is a weighted mean of the same channel of the first's outputs."""
    for layer in encoder_layers(model) or ():
        att = getattr(layer, "attention", None)
        value, output = _linear(att, "v_lin"), _linear(att, "out_lin")
        if value is None:
            inner, after = getattr(att, "self", None), getattr(att, "output", None)
            value, output = _linear(inner, "value"), _linear(after, "dense")
        if value is not None and output is not None and value.bias is not None:
            yield value, output


def calibrate(model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]]
              ) -> tuple[dict[int, tuple[float, float]], dict[int, torch.Tensor]]:
    """Run the encoder over ``batches``; return each feed-forward activation's (min, max) and each
    attention output projection's per-channel input max |x|, both by module ``id``."""
    ranges: dict[int, tuple[float, float]] = {}
    channels: dict[int, torch.Tensor] = {}
    hooks = []

    def record(module: torch.nn.Module, _inputs, output: torch.Tensor) -> None:
        low, high = torch.aminmax(output)
        old = ranges.get(id(module), (0.0, 0.0))
        ranges[id(module)] = (min(old[0], low.item()), max(old[1], high.item()))

    def record_channels(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        peak = x.reshape(-1, x.shape[-1]).abs().amax(dim=0).float()
        old = channels.get(id(module))
        channels[id(module)] = peak if old is None else torch.maximum(old, peak)

    for _, _, act_owner, act_name, _, _ in feed_forward_blocks(model):
        hooks.append(getattr(act_owner, act_name).register_forward_hook(record))
    for _, output in value_output_pairs(model):
        hooks.append(output.register_forward_pre_hook(record_channels))
    try:
        with torch.inference_mode():
            for batch in batches:
                model.base_model(**batch)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges, channels


def smooth(value: torch.nn.Linear, output: torch.nn.Linear, peak: torch.Tensor, alpha: float = 0.5) -> None:
    """Move the context's per-channel spread from the activation into the output projection's weight.

    Channel c of the value projection is divided by s_c and column c of the output projection
    multiplied by it (s_c = peak_c^alpha / max|W_out[:, c]|^(1-alpha), SmoothQuant's rule): the
    float function is unchanged, but the context the output projection quantises per tensor has
    its outlier channels scaled down. Weights become fp32 (they are quantised next).
    """
    w = output.weight.detach().float()
    spread = w.abs().amax(dim=0).clamp_min(1e-5).pow(1 - alpha)
    scale = (peak.clamp_min(1e-5).pow(alpha) / spread).clamp_min(1e-5)
    value.weight = torch.nn.Parameter(value.weight.detach().float() / scale[:, None], requires_grad=False)
    value.bias = torch.nn.Parameter(value.bias.detach().float() / scale, requires_grad=False)
    output.weight = torch.nn.Parameter(w * scale[None, :], requires_grad=False)


def convert(model: torch.nn.Module, calibration: Callable[[], Sequence[dict[str, torch.Tensor]]],
            out_dtype: torch.dtype) -> int:
    """Swap the encoder's linears for ``QuantizedLinear`` in place; returns how many.

    ``calibration()`` gives the encoder batches whose feed-forward ranges fix the static u8 scale
    between each block's two GEMMs. Heads keep the model's float dtype (``runtime.prepack_linears``
    packs them afterwards): fill-mask scores come from a float vocabulary projection.
    """
    ranges, channels = calibrate(model, calibration())
    for value, output in list(value_output_pairs(model)):
        smooth(value, output, channels[id(output)])
    count = 0
    for owner1, name1, act_owner, act_name, owner2, name2 in list(feed_forward_blocks(model)):
        act = getattr(act_owner, act_name)
        first = QuantizedLinear(getattr(owner1, name1), out_dtype, gelu=True,
                                out_range=ranges.get(id(act), (0.0, 0.0)))
        second = QuantizedLinear(getattr(owner2, name2), out_dtype, in_params=first.out_params)
        setattr(owner1, name1, first)
        setattr(act_owner, act_name, torch.nn.Identity())
        setattr(owner2, name2, second)
        count += 2
    for module, names in list(_attention_inputs(model)):
        shared = SharedQuantizer()
        for name in names:
            setattr(module, name, QuantizedLinear(getattr(module, name), out_dtype, quantizer=shared))
            count += 1
    for module in _layer_modules(model):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:  # the attention output projections
                setattr(module, name, QuantizedLinear(child, out_dtype))
                count += 1
    return count
