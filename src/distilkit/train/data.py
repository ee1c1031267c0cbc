"""Raw text -> tokenized shards (streaming), the shard dataset, length-grouped batches, padding.

Shard directory layout (the contract ``prepare_data`` writes and ``TokenShards`` reads):

    manifest.json             tokenizer, vocab size, dtype, special ids, counts, shard list
    counts.npy                (V,) int64 token counts over the corpus (for MLM smoothing)
    tokenizer files           the tokenizer that made the shards (tokenizer.json, ...)
    shard-00000.tokens.npy    (N,) uint16|uint32, all sequences of the shard back to back
    shard-00000.offsets.npy   (S+1,) int64, sequence i is tokens[offsets[i]:offsets[i+1]]
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distilkit.errors import UserError

FORMAT_VERSION = 1
READ_LINES = 1000  # lines tokenized per batch call (fast tokenizers are much faster in batch)
RECENT_POOL = 10_000  # earlier lines kept as the source of non-consecutive --pairs partners


@dataclass(frozen=True)
class PrepareStats:
    """Summary of one ``prepare_data`` run."""

    output: Path
    sequences: int
    tokens: int
    dropped_short: int
    shards: int


def shard_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab < 65,536), else uint32."""
    return np.dtype(np.uint16 if vocab_size < 2**16 else np.uint32)


def _read_lines(paths: list[Path], progress) -> Iterator[list[str]]:
    """Yield lists of non-blank lines (stripped), READ_LINES at a time; advances ``progress`` by bytes."""
    chunk: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                progress.update(len(line.encode("utf-8")))
                if line.strip():
                    chunk.append(line.strip())
                if len(chunk) >= READ_LINES:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


class _ShardWriter:
    """Accumulates sequences and writes a shard each time ``shard_tokens`` tokens are buffered."""

    def __init__(self, output: Path, dtype: np.dtype, vocab_size: int, shard_tokens: int):
        self.output, self.dtype, self.shard_tokens = output, dtype, shard_tokens
        self.counts = np.zeros(vocab_size, dtype=np.int64)
        self.buffer: list[list[int]] = []
        self.buffered = 0
        self.shards: list[dict] = []
        self.sequences = self.tokens = 0

    def add(self, ids: list[int]) -> None:
        self.buffer.append(ids)
        self.buffered += len(ids)
        if self.buffered >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        name = f"shard-{len(self.shards):05d}"
        lengths = np.fromiter((len(ids) for ids in self.buffer), dtype=np.int64, count=len(self.buffer))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tokens = np.fromiter(
            (t for ids in self.buffer for t in ids), dtype=self.dtype, count=int(offsets[-1])
        )
        np.save(self.output / f"{name}.tokens.npy", tokens)
        np.save(self.output / f"{name}.offsets.npy", offsets)
        self.counts += np.bincount(tokens, minlength=len(self.counts))[: len(self.counts)]
        self.shards.append({"name": name, "sequences": len(self.buffer), "tokens": int(offsets[-1])})
        self.sequences += len(self.buffer)
        self.tokens += int(offsets[-1])
        self.buffer, self.buffered = [], 0


def special_template(tokenizer, pair: bool) -> list[int | str]:
    """Where the tokenizer puts its specials, read from its own post-processor: a list of special
    ids and the placeholders "A"/"B" (BERT single: [101, "A", 102]; RoBERTa pair: [0, "A", 2, 2, "B", 2])."""
    enc = tokenizer("a", "b" if pair else None, add_special_tokens=True)
    template: list[int | str] = []
    for token, segment in zip(enc["input_ids"], enc.sequence_ids(), strict=True):
        if segment is None:
            template.append(token)
        elif template[-1:] != ["AB"[segment]]:
            template.append("AB"[segment])
    return template


def with_specials(template: list[int | str], a: list[int], b: list[int] | None = None) -> list[int]:
    """Fill a ``special_template`` with the text ids of segment A (and B)."""
    out: list[int] = []
    for item in template:
        out += a if item == "A" else (b or []) if item == "B" else [item]
    return out


def _pair(template, a: list[int], b: list[int], budget: int) -> list[int]:
    """``[CLS] A [SEP] B [SEP]`` (the tokenizer's own specials), longest-first truncation to ``budget``."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        (a if len(a) >= len(b) else b).pop()
    return with_specials(template, a, b)


def _add_pair(writer, template, previous, ids, recent, rng, budget, min_tokens) -> int:
    """Write the pair (previous line, next line | random earlier line); return 1 if it was dropped."""
    if previous is None:
        return 0
    dropped = 0
    if len(previous) >= min_tokens and len(ids) >= min_tokens:
        consecutive = rng.random() < 0.5 or not recent
        writer.add(_pair(template, previous, ids if consecutive else rng.choice(recent), budget))
    else:
        dropped = 1
    if len(recent) < RECENT_POOL:
        recent.append(previous)
    else:  # reservoir: a bounded pool of earlier lines keeps --pairs streaming
        recent[rng.randrange(RECENT_POOL)] = previous
    return dropped


def prepare_data(
    tokenizer_ref: str,
    inputs: list[str | Path],
    output: str | Path,
    *,
    max_length: int = 512,
    min_tokens: int = 10,
    pairs: bool = False,
    shard_tokens: int = 50_000_000,
    seed: int = 0,
    progress: bool = True,
) -> PrepareStats:
    """Tokenize text files (one document/sentence per line) into shards under ``output``.

    Args:
        tokenizer_ref: model directory or hub id whose tokenizer to use.
        inputs: UTF-8 text files; blank lines are skipped.
        output: shard directory (created; must be empty or absent).
        max_length: longest sequence with specials (512 -> 510-token chunks for BERT/RoBERTa).
        min_tokens: lines (or last chunks) with fewer text tokens are dropped.
        pairs: build ``[CLS] A [SEP] B [SEP]`` from consecutive lines, B the next line 50% of the
            time and a random earlier line otherwise.
        shard_tokens: tokens per shard (memory use while preparing is about this many ints).
        seed: seed for the pairing draw.
        progress: show a progress bar over the input bytes.

    Raises:
        UserError: missing input file, non-empty output, bad lengths.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from distilkit.models import resolve_source

    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.is_file():
            raise UserError(f"--input {path} does not exist or is not a file")
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise UserError(f"--output {output} is not empty; choose a new directory")
    if min_tokens < 0:
        raise UserError(f"--min-tokens must be >= 0, got {min_tokens}")
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(tokenizer_ref))
    template = special_template(tokenizer, pairs)
    n_special = sum(isinstance(item, int) for item in template)
    budget = max_length - n_special
    if budget < max(min_tokens, 1):
        raise UserError(
            f"--max-length {max_length} leaves no room for text after {n_special} special tokens"
        )
    vocab_size = len(tokenizer)
    dtype = shard_dtype(vocab_size)
    output.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(output, dtype, vocab_size, shard_tokens)
    rng = random.Random(seed)
    recent: list[list[int]] = []  # pool of earlier lines, the "random sentence" source for --pairs
    previous: list[int] | None = None
    dropped = 0
    bar = tqdm(
        total=sum(p.stat().st_size for p in paths),
        unit="B",
        unit_scale=True,
        disable=not progress,
        desc="prepare-data",
    )
    with bar:
        for lines in _read_lines(paths, bar):
            for ids in tokenizer(lines, add_special_tokens=False, verbose=False)["input_ids"]:
                if pairs:
                    dropped += _add_pair(writer, template, previous, ids, recent, rng, budget, min_tokens)
                    previous = ids
                    continue
                for start in range(0, max(len(ids), 1), budget):
                    chunk = ids[start : start + budget]
                    if len(chunk) < min_tokens:
                        dropped += 1
                        continue
                    writer.add(with_specials(template, chunk))
    writer.flush()
    if writer.sequences == 0:
        raise UserError(
            f"no sequence left from {len(paths)} input file(s): all lines shorter than "
            f"--min-tokens {min_tokens}"
        )
    np.save(output / "counts.npy", writer.counts)
    tokenizer.save_pretrained(output)
    manifest = {
        "format_version": FORMAT_VERSION,
        "tokenizer": str(tokenizer_ref),
        "vocab_size": vocab_size,
        "dtype": dtype.name,
        "max_length": max_length,
        "min_tokens": min_tokens,
        "pairs": pairs,
        "special_ids": sorted(set(tokenizer.all_special_ids)),
        "mask_token_id": tokenizer.mask_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "inputs": [str(p) for p in paths],
        "sequences": writer.sequences,
        "tokens": writer.tokens,
        "dropped_short": dropped,
        "shards": writer.shards,
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return PrepareStats(output, writer.sequences, writer.tokens, dropped, len(writer.shards))


class TokenShards:
    """Read-only view of a shard directory: ``ds[i]`` is sequence i as a numpy int array (memory-mapped)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        path = self.directory / "manifest.json"
        if not path.is_file():
            raise UserError(
                f"--data {self.directory} has no manifest.json; create it with distilkit prepare-data"
            )
        self.manifest = json.loads(path.read_text())
        self._tokens = [
            np.load(self.directory / f"{s['name']}.tokens.npy", mmap_mode="r")
            for s in self.manifest["shards"]
        ]
        offsets = [np.load(self.directory / f"{s['name']}.offsets.npy") for s in self.manifest["shards"]]
        self._index = np.concatenate(
            [np.stack([np.full(len(o) - 1, k), o[:-1], o[1:]], axis=1) for k, o in enumerate(offsets)]
        )  # (S, 3): shard, start, end
        self.lengths = (self._index[:, 2] - self._index[:, 1]).astype(np.int64)  # (S,)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> np.ndarray:
        shard, start, end = self._index[i]
        return np.asarray(self._tokens[shard][start:end], dtype=np.int64)

    def counts(self) -> np.ndarray:
        """(V,) token counts of the corpus."""
        return np.load(self.directory / "counts.npy")


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_factor: int = 50
) -> list[np.ndarray]:
    """One epoch's batches of indices: shuffled, then sorted by length inside groups of
    ``batch_size * group_factor`` so each batch pads little; batch order shuffled again.

    Deterministic in (seed, epoch): resuming regenerates the same list and skips ahead.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    group = batch_size * group_factor
    batches = []
    for g in range(0, len(order), group):
        members = order[g : g + group]
        members = members[np.argsort(-lengths[members], kind="stable")]
        batches += [members[b : b + batch_size] for b in range(0, len(members), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_sequences(sequences: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token sequences to the longest of them: ids and the attention mask that marks the real tokens.

    Returns:
        input_ids (B, T) long and attention_mask (B, T) long.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.from_numpy(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def segment_ids(ids: torch.Tensor, attention: torch.Tensor, sep_id: int) -> torch.Tensor:
    """BERT token types of ``[CLS] A [SEP] B [SEP]`` rows: 0 up to the first separator, 1 after it, 0 at pad.

    Args:
        ids: (B, T) token ids; attention: (B, T) 1 for real tokens; sep_id: the separator's id.

    Returns:
        (B, T) long.
    """
    is_sep = (ids == sep_id).long()
    seps_before = is_sep.cumsum(dim=1) - is_sep  # separators strictly before each position
    return ((seps_before > 0) & attention.bool()).long()
