"""Text <-> ids for a request's few texts: the tokenizer's own Rust encoder and decoder, called directly.

A served fill-mask request encodes one sentence and decodes five candidate sentences. Through the
transformers tokenizer each call also re-applies its truncation and padding state, converts the ids
to Python once more and, for a list, hands the texts to the tokenizers library's thread pool (a
thread hop for one text, beside the model's OpenMP team): on distilbert-base-cased's tokenizer
65 us per encoded sentence and 113 us per five decoded ones, against 37 and ~60 called directly.

``Codec`` calls a private copy of the Rust tokenizer whose truncation and padding are off for good
(so no call changes its state) and cleans up spaces as the transformers tokenizer's ``decode`` does
(WordPiece, not BPE, unless the tokenizer says otherwise). At load it checks itself against the
transformers tokenizer on a probe text and, should they differ (a transformers release that decodes
differently), for a slow (Python) tokenizer, or for one it cannot copy (a custom Python component),
it calls the transformers tokenizer instead. Tests pin equality on every tokenizer in ../shared.
"""

from __future__ import annotations

import logging
from typing import Any

from tokenizers import Tokenizer

log = logging.getLogger("distilkit")
# Up to this many texts are encoded one by one; more go to the library's thread pool in one call.
SERIAL_TEXTS = 8
# Spaces before punctuation and contractions (what clean-up changes), a mask, accents and digits.
PROBE = "Hello , world ! It 's a [MASK] <mask> test : isn 't it ? Café 3.5 ( yes ) ."


class Codec:
    """``encode(texts)`` -> ids with special tokens; ``decode(sequences, skip_special_tokens)`` -> texts."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._backend: Tokenizer | None = None
        backend = getattr(tokenizer, "_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        if not isinstance(backend, Tokenizer):
            return
        try:
            backend = Tokenizer.from_str(backend.to_str())
        except Exception:  # noqa: BLE001 - the library raises a bare Exception (e.g. a custom pre-tokenizer)
            log.warning("cannot copy the Rust tokenizer of %s; using it through transformers",
                        type(tokenizer).__name__)
            return
        backend.no_truncation()
        backend.no_padding()
        backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
        self._backend, self._clean_up = backend, _cleans_up(tokenizer, backend)
        if not self._agrees():
            log.warning("the Rust tokenizer does not match %s on a probe text; using the latter",
                        type(tokenizer).__name__)
            self._backend = None

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text with the model's special tokens, untruncated."""
        if self._backend is None:
            return self.tokenizer(texts, add_special_tokens=True, return_attention_mask=False,
                                  return_token_type_ids=False)["input_ids"]
        if len(texts) <= SERIAL_TEXTS:
            return [self._backend.encode(text).ids for text in texts]
        return [encoding.ids for encoding in self._backend.encode_batch(texts)]

    def decode(self, sequences: list[list[int]], skip_special_tokens: bool = False) -> list[str]:
        """Text of each id sequence, as the transformers tokenizer's ``decode`` writes it."""
        if self._backend is None:
            return [self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]
        texts = [self._backend.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]
        if self._clean_up:
            texts = [self.tokenizer.clean_up_tokenization(text) for text in texts]
        return texts

    def _agrees(self) -> bool:
        ids = self.tokenizer(PROBE, add_special_tokens=True)["input_ids"]
        return self.encode([PROBE]) == [ids] and all(
            self.decode([ids], skip)[0] == self.tokenizer.decode(ids, skip_special_tokens=skip)
            for skip in (False, True))


def _cleans_up(tokenizer: Any, backend: Tokenizer) -> bool:
    """Whether the transformers tokenizer's ``decode`` cleans up spaces (not on BPE unless forced)."""
    if not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return False
    forced = "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"
    return type(backend.model).__name__ != "BPE" or bool(getattr(tokenizer, forced, False))
