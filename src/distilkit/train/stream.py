"""The loops' micro-batch streams: global micro-batch index -> a batch on the device.

``MicroBatches`` (distillation: masked token sequences) and ``TaskBatches`` (fine-tuning: padded inputs
with the task's targets). ``get(g)`` is a pure function of ``g`` and the rank: the epoch's batch order
comes from (seed, epoch), distillation's masking draw from (seed, g, rank). Resuming therefore replays
exactly, and a micro-batch can be rebuilt from its index (the NaN report saves it that way).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from distilkit.config import DistillConfig, FinetuneConfig
from distilkit.errors import UserError
from distilkit.train import label_space, task_data
from distilkit.train.data import TokenShards, length_grouped_batches, pad_sequences
from distilkit.train.masking import MaskedBatch, mask_tokens, token_weights


class MicroBatch(NamedTuple):
    """One micro-batch on the device, masked; ``tokens`` and ``masked_rows`` come from the host copy,
    so counting them never waits for the device."""

    epoch: int
    input_ids: torch.Tensor  # (B, T) long, the original tokens
    attention: torch.Tensor  # (B, T) long, 1 for real tokens
    masked: MaskedBatch  # what the student sees (input_ids), labels and chosen positions, (B, T) each
    masked_rows: torch.Tensor  # (N_m,) long, flat indices of the chosen positions into B*T
    tokens: int  # real tokens of the micro-batch


class MicroBatches:
    """The micro-batch stream: global index g -> ``MicroBatch`` for this rank; a pure function of g."""

    def __init__(self, data: TokenShards, cfg: DistillConfig, rank: int, world: int, device: torch.device):
        self.data, self.cfg, self.rank, self.world, self.device = data, cfg, rank, world, device
        m = data.manifest
        self.special_ids, self.mask_id, self.pad_id = m["special_ids"], m["mask_token_id"], m["pad_token_id"]
        self.vocab_size = m["vocab_size"]
        self.weights = token_weights(data.counts(), cfg.mlm_smoothing)
        self._epoch, self._batches = -1, []
        self.per_epoch = len(self.batches(0)) // world
        if self.per_epoch == 0:
            raise UserError(
                f"--data has {len(data)} sequences: fewer batches of --batch-size {cfg.batch_size} "
                f"than processes ({world}); lower --batch-size"
            )

    def batches(self, epoch: int) -> list:
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = length_grouped_batches(
                self.data.lengths, self.cfg.batch_size, self.cfg.seed, epoch
            )
        return self._batches

    def get(self, g: int) -> MicroBatch:
        """Micro-batch g of this rank: the epoch it belongs to and its tensors, masked, on the device."""
        epoch, i = divmod(g, self.per_epoch)
        rows = self.batches(epoch)[i * self.world + self.rank]
        sequences = [self.data[int(r)] for r in rows]
        ids, attention = pad_sequences(sequences, self.pad_id)  # (B, T), (B, T)
        seed = int(np.random.SeedSequence([self.cfg.seed, g, self.rank]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(seed)
        masked = mask_tokens(
            ids,
            attention,
            special_ids=self.special_ids,
            mask_token_id=self.mask_id,
            vocab_size=self.vocab_size,
            weights=self.weights,
            mlm_probability=self.cfg.mlm_probability,
            mask_replace=self.cfg.mask_replace,
            random_replace=self.cfg.random_replace,
            generator=gen,
        )
        masked_rows = masked.chosen.flatten().nonzero().squeeze(1)  # on the host: no device sync
        to = self.device
        masked = type(masked)(masked.input_ids.to(to), masked.labels.to(to), masked.chosen.to(to))
        return MicroBatch(epoch, ids.to(to), attention.to(to), masked, masked_rows.to(to),
                          sum(len(s) for s in sequences))


class TaskBatches:
    """Fine-tuning's micro-batch stream: global index g -> (epoch, padded batch with targets on the
    device) for this rank; a pure function of g like ``MicroBatches``."""

    def __init__(self, data: task_data.TrainData, cfg: FinetuneConfig, space: label_space.LabelSpace,
                 pad_id: int, accepted: set[str], rank: int, world: int, device: torch.device):
        self.data, self.cfg, self.space, self.pad_id = data, cfg, space, pad_id
        self.accepted, self.rank, self.world, self.device = accepted, rank, world, device
        self._epoch, self._batches = 0, length_grouped_batches(data.lengths, cfg.batch_size, cfg.seed, 0)
        self.per_epoch = len(self._batches) // world
        if self.per_epoch == 0:
            raise UserError(
                f"--train has {len(data)} rows: fewer batches of --batch-size {cfg.batch_size} than processes"
            )

    def get(self, g: int) -> tuple[int, int, dict[str, torch.Tensor]]:
        """(epoch, examples, batch) of micro-batch ``g``: the model's inputs and the task's targets."""
        epoch, i = divmod(g, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = length_grouped_batches(
                self.data.lengths, self.cfg.batch_size, self.cfg.seed, epoch
            )
        rows = self._batches[i * self.world + self.rank]
        batch = task_data.training_batch(self.data, rows, self.pad_id, self.cfg.task, self.space.problem_type)
        out = {k: v.to(self.device) for k, v in batch.items() if k in self.accepted}
        if task_data.LABELLED_ROWS in batch:  # a count for the loss, not a model input
            out[task_data.LABELLED_ROWS] = batch[task_data.LABELLED_ROWS]
        return epoch, len(rows), out
