"""The encoder computed only where an answer needs it: real tokens only, and in the last layer
only the positions a head reads.

Fill-mask reads the last hidden state at the masks only and the text-classification heads of the
BERT family at the first token only, yet every other position of the last layer is computed too:
its query projection, attention output, residual + LayerNorm and feed-forward block, ~10/12 of
the layer's GEMM work. The last layer needs every position's keys and values and nothing else,
so ``select_last_layer`` lets it run the rest on the selected rows alone: 1/L less encoder work
overall (14% for 6 layers, 28% for 3) for the same answers (the same operations on the same
rows). The layer's other positions come out as zeros, so a head that reads only the selected
positions (or a pooler over the first token) is unaffected.

A batch of rows of different lengths is padded to its longest, and every layer's GEMMs would
run on the padding too. ``skip_padding`` lets the layers run on the real tokens alone, as one
(N, H) matrix: only attention pads them back into sequences. The same operations on the same
rows; a server's batch of requests as they arrive (unsorted) is where the padding is.

    select_last_layer(model); skip_padding(model)     # once, at load
    with real_tokens(model, attention_mask), only_at(model, positions, attention_mask):  # per call
        hidden = model.base_model(**batch)[0]        # exact at ``positions``, zeros elsewhere
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from distilkit.inference import runtime
from distilkit.inference.packing import packed_rows, packed_sequences

_state = threading.local()  # the selection and real tokens of the call running on this thread


@dataclass(frozen=True)
class Selection:
    layer: torch.nn.Module  # the selective layer this selection is for (another model ignores it)
    index: torch.Tensor  # (M,) int64: the positions to compute, as flat indices into B*T
    key_mask: torch.Tensor | None  # (B, T) bool: True where a key counts; None = all


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The encoder layers: DistilBERT's ``transformer.layer``, BERT/RoBERTa's ``encoder.layer``."""
    base = getattr(model, "base_model", model)
    for owner in ("transformer", "encoder"):
        layers = getattr(getattr(base, owner, None), "layer", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return layers
    return None


def _attend(sel: Selection, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            heads: int, scale: float) -> torch.Tensor:
    """Attention of the selected rows' queries (M, H) over their own sequence's keys/values (B, T, H)."""
    m, (b, t, h) = query.shape[0], key.shape
    rows = torch.div(sel.index, t, rounding_mode="floor")  # (M,) the sequence of each selected position
    d = h // heads
    q = query.view(m, heads, 1, d)
    k = key.view(b, t, heads, d).transpose(1, 2)[rows]  # (M, heads, T, d)
    v = value.view(b, t, heads, d).transpose(1, 2)[rows]
    mask = None if sel.key_mask is None else sel.key_mask[rows].view(m, 1, 1, t)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.reshape(m, h)  # (M, H)


# Attention of some rows' queries over the keys and values they may see:
# (query, key, value, heads, scale) -> the context of each query row.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, float], torch.Tensor]

# A layer's work as one function of (layer, the rows its keys and values come from, the rows to
# compute, their attention): the same operations as the layer's own forward at inference.


def _distilbert_block(layer: torch.nn.Module, source: torch.Tensor, rows: torch.Tensor,
                      attend: Attend) -> torch.Tensor:
    att = layer.attention
    ctx = attend(att.q_lin(rows), att.k_lin(source), att.v_lin(source), att.n_heads, att.scaling)
    a = layer.sa_layer_norm(att.out_lin(ctx) + rows)
    return layer.output_layer_norm(layer.ffn(a) + a)


def _bert_block(layer: torch.nn.Module, source: torch.Tensor, rows: torch.Tensor,
                attend: Attend) -> torch.Tensor:
    att = layer.attention.self
    ctx = attend(att.query(rows), att.key(source), att.value(source), att.num_attention_heads, att.scaling)
    a = layer.attention.output(ctx, rows)  # dense -> + rows -> LayerNorm
    return layer.output(layer.intermediate(a), a)  # dense (+GELU) -> dense -> + a -> LayerNorm


def _block_function(layer: torch.nn.Module) -> Callable[..., torch.Tensor] | None:
    """How to compute rows of this kind of layer; None for a layer of another design."""
    att = getattr(layer, "attention", None)
    if all(hasattr(att, n) for n in ("q_lin", "k_lin", "v_lin", "out_lin", "n_heads", "scaling")) and all(
            hasattr(layer, n) for n in ("sa_layer_norm", "ffn", "output_layer_norm")):
        return _distilbert_block
    inner = getattr(att, "self", None)
    if (all(hasattr(inner, n) for n in ("query", "key", "value", "num_attention_heads", "scaling"))
            and hasattr(att, "output") and hasattr(layer, "intermediate") and hasattr(layer, "output")
            and not getattr(layer, "add_cross_attention", False)):
        return _bert_block
    return None


def _scatter(rows: torch.Tensor, index: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """``rows`` (M, H) placed at the flat positions ``index`` of a zero tensor of ``shape`` (B, T, H)."""
    return rows.new_zeros((shape[0] * shape[1], rows.shape[-1])).index_copy_(0, index, rows).view(shape)


def select_last_layer(model: torch.nn.Module) -> bool:
    """Let ``model``'s last encoder layer compute only the positions of ``only_at``; True if it can.

    The layer's ``forward`` is wrapped on the instance (the module tree and ``state_dict`` are
    unchanged); outside ``only_at``, or while training, it runs in full as before.
    """
    layers = encoder_layers(model)
    if layers is None:
        return False
    last = layers[-1]
    block = _block_function(last)
    if block is None or getattr(last, "_distilkit_selective", False):
        return block is not None
    full = last.forward

    def forward(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        sel = getattr(_state, "selection", None)
        if sel is None or sel.layer is not last or last.training or hidden_states.dim() != 3:
            return full(hidden_states, *args, **kwargs)  # (N, H) real tokens: ``skip_padding`` selects
        width = hidden_states.shape[-1]
        rows = hidden_states.reshape(-1, width).index_select(0, sel.index)  # (M, H)
        out = block(last, hidden_states, rows, functools.partial(_attend, sel))
        return _scatter(out, sel.index, hidden_states.shape)

    last.forward = forward
    last._distilkit_selective = True
    return True


@contextlib.contextmanager
def only_at(model: torch.nn.Module, positions: torch.Tensor,
            attention_mask: torch.Tensor | None = None) -> Iterator[bool]:
    """Within the block, ``model``'s last layer computes only ``positions``, if it is selective.

    ``positions`` is a (B, T) bool mask or a (M,) int64 tensor of distinct flat indices into
    ``B*T`` (what an exported graph takes); ``attention_mask`` is the batch's (B, T) padding mask
    (1/True where a token counts). Yields whether the selection applies (False: the model runs in
    full, e.g. one ``select_last_layer`` could not adapt).
    """
    layers = encoder_layers(model)
    last = None if layers is None else layers[-1]
    if last is None or not getattr(last, "_distilkit_selective", False):
        yield False
        return
    key_mask = None if attention_mask is None else attention_mask.bool()
    previous = getattr(_state, "selection", None)
    index = positions.reshape(-1).nonzero().squeeze(1) if positions.dtype == torch.bool else positions
    _state.selection = Selection(last, index, key_mask)
    try:
        yield True
    finally:
        _state.selection = previous


# Below this share of padding a batch runs padded: gathering the real tokens and padding them back
# for attention costs ~2-3% of a bf16 pass (batches of 8 ~120-token rows, 0.5% padding, ran at 0.96-0.99x
# the padded batch, ``benchmarks/padding_ab.py``), while 11-13% padding gave 1.02-1.15x.
MIN_PADDING_SHARE = 0.05


@dataclass(frozen=True)
class Tokens:
    """The real tokens of a padded batch, for encoder layers that skip its padding (``real_tokens``)."""

    layers: torch.nn.ModuleList  # the layers this batch is for (another model ignores it)
    index: torch.Tensor  # (P,) int64: the real tokens' flat positions in B*T, then P - N repeats of
    # position 0 so that the GEMMs see one of few row counts (``packing.packed_rows``)
    real: int  # N, the real tokens: the first N rows of ``index``
    slot: torch.Tensor  # (B*T,) int64: each flat position's row among the N real tokens (-1: padding)
    sequences: int  # B, the batch's rows
    attention_mask: torch.Tensor  # (B', T) bool: True at a real token, then rows of True up to
    # B' (``packing.packed_sequences``)
    two_gemm: bool  # attention as ``runtime.bmm_attention`` (the model's bf16 CPU kernel), else SDPA

    @property
    def shape(self) -> tuple[int, int]:
        """(B, T)."""
        return self.sequences, self.attention_mask.shape[1]

    def gather(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (P, H): the real tokens' rows (and the repeats)."""
        return hidden.reshape(-1, hidden.shape[-1]).index_select(0, self.index)

    def pad(self, rows: torch.Tensor, sequences: int | None = None) -> torch.Tensor:
        """(P, H) -> (B, T, H), or ``sequences`` x T: the real tokens' rows in place, zeros elsewhere."""
        b, t = self.shape
        return _scatter(rows[: self.real], self.index[: self.real], (sequences or b, t, rows.shape[-1]))

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int,
               scale: float) -> torch.Tensor:
        """Every real token's attention over its own sequence's real tokens: (P, H) in, (P, H) out.

        Padded to (B', heads, T, d) for the attention itself, the one step that needs sequences.
        """
        (b, t), h = self.attention_mask.shape, query.shape[-1]
        q, k, v = (self.pad(x, b).view(b, t, heads, h // heads).transpose(1, 2) for x in (query, key, value))
        mask = self.attention_mask.view(b, 1, 1, t)
        if self.two_gemm:
            out = runtime.bmm_attention(None, q, k, v, mask, scaling=scale)[0]  # (B, T, heads, d)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=scale).transpose(1, 2)
        return out.reshape(b * t, h).index_select(0, self.index)


def skip_padding(model: torch.nn.Module) -> bool:
    """Let ``model``'s encoder layers run on the real tokens of ``real_tokens`` batches; True if they can.

    Within ``real_tokens`` the first layer gathers the batch's real tokens, the layers pass them on
    as one (N, H) matrix and the last layer puts its rows back into the padded (B, T, H) shape
    (zeros at padding; with ``only_at`` too, at the selected positions only). Each forward wraps
    the layer instance's own; outside the block, or while training, the layers run as before.
    """
    layers = encoder_layers(model)
    if layers is None or any(_block_function(layer) is None for layer in layers):
        return False
    for i, layer in enumerate(layers):
        if not getattr(layer, "_distilkit_tokens", False):
            _skip_padding_in(layer, layers, last=i == len(layers) - 1)
    return True


def _skip_padding_in(layer: torch.nn.Module, layers: torch.nn.ModuleList, last: bool) -> None:
    block, inner = _block_function(layer), layer.forward

    def forward(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        tokens = getattr(_state, "tokens", None)
        if tokens is None or tokens.layers is not layers or layer.training:
            return inner(hidden_states, *args, **kwargs)
        x = hidden_states if hidden_states.dim() == 2 else tokens.gather(hidden_states)  # (P, H)
        if not last:
            return block(layer, x, x, tokens.attend)
        sel = getattr(_state, "selection", None)
        if sel is None or sel.layer is not layer:
            return tokens.pad(block(layer, x, x, tokens.attend))

        def attend(query, key, value, heads, scale):  # the selected queries over padded keys/values
            return _attend(sel, query, tokens.pad(key), tokens.pad(value), heads, scale)

        rows = block(layer, x, x.index_select(0, tokens.slot[sel.index]), attend)
        return _scatter(rows, sel.index, (*tokens.shape, rows.shape[-1]))

    layer.forward = forward
    layer._distilkit_tokens = True


@contextlib.contextmanager
def real_tokens(model: torch.nn.Module, attention_mask: torch.Tensor | None) -> Iterator[bool]:
    """Within the block, ``model``'s encoder skips the padding of ``attention_mask`` (B, T), if it can.

    Yields whether it does: not for a batch with less than ``MIN_PADDING_SHARE`` of padding (little
    to skip), nor for a model ``skip_padding`` did not adapt. Heads see the usual (B, T, H) hidden
    states, zeros at padding.
    """
    layers = encoder_layers(model)
    if layers is None or attention_mask is None or not getattr(layers[0], "_distilkit_tokens", False):
        yield False
        return
    key_mask = attention_mask.bool()
    index = key_mask.reshape(-1).nonzero().squeeze(1)
    if index.numel() > (1 - MIN_PADDING_SHARE) * key_mask.numel():
        yield False
        return
    slot = torch.full((key_mask.numel(),), -1, dtype=torch.int64, device=index.device)
    slot[index] = torch.arange(index.numel(), device=index.device)
    two_gemm = getattr(model.config, "_attn_implementation", None) == runtime.BMM_ATTENTION
    real = index.numel()
    index = torch.cat([index, index.new_zeros(packed_rows(real) - real)])
    previous = getattr(_state, "tokens", None)
    b, t = key_mask.shape
    attention = torch.cat([key_mask, key_mask.new_ones(packed_sequences(b) - b, t)])
    _state.tokens = Tokens(layers, index, real, slot, b, attention, two_gemm)
    try:
        yield True
    finally:
        _state.tokens = previous
