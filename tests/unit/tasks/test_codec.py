"""The Codec: the transformers tokenizer's ids and texts, from a private copy of its Rust tokenizer."""

from __future__ import annotations

import logging
import random

import pytest
from tiny_models import bpe_tokenizer, wordpiece_tokenizer
from transformers import AutoTokenizer

from distilkit.tasks.codec import SERIAL_TEXTS, Codec

SHARED_TOKENIZERS = ("distilbert-base-cased", "distilbert-base-uncased",
                     "distilbert-base-cased-distilled-squad", "distilroberta-base", "roberta-base",
                     "bert-base-cased", "all-MiniLM-L6-v2")
HARD_CASES = ["Hello , world ! It 's a [MASK] <mask> test : isn 't it ?", "  spaced   out  ", "",
              "ÀÉÎõü naïve café 😀 日本語", "don't won't I'm you're we've ( a ) [ b ] \" c \" - d -- e ..."]


def assert_same_as_tokenizer(tokenizer, texts: list[str]) -> None:
    codec = Codec(tokenizer)
    assert codec._backend is not None, "a fast tokenizer is called directly"
    expected = tokenizer(texts, add_special_tokens=True)["input_ids"]
    assert len(texts) > SERIAL_TEXTS  # both ways of encoding: in one call and one text at a time
    assert codec.encode(texts) == expected
    assert [codec.encode([text])[0] for text in texts] == expected
    for skip in (False, True):
        decoded = [tokenizer.decode(ids, skip_special_tokens=skip) for ids in expected]
        assert codec.decode(expected, skip) == decoded


@pytest.mark.parametrize("name", SHARED_TOKENIZERS)
def test_codec_encodes_and_decodes_like_each_real_tokenizer(shared_dir, name):
    rng = random.Random(0)
    lines = (shared_dir / "data/wikitext-2/test.txt").read_text(encoding="utf-8").splitlines()
    paragraphs = [line.strip() for line in lines if line.strip() and not line.startswith(" =")][:200]
    texts = [p[:rng.randint(1, 2500)] for p in paragraphs] + HARD_CASES  # some past 512 tokens: no truncation
    assert_same_as_tokenizer(AutoTokenizer.from_pretrained(shared_dir / "models" / name), texts)


@pytest.mark.parametrize("make", [lambda: wordpiece_tokenizer(), lambda: wordpiece_tokenizer(lowercase=True),
                                  bpe_tokenizer], ids=["wordpiece", "wordpiece-uncased", "bpe"])
def test_codec_encodes_and_decodes_like_a_tiny_tokenizer(make):
    assert_same_as_tokenizer(make(), HARD_CASES * 3)


def test_codec_is_not_truncated_by_the_tokenizer_calls_of_others():
    tokenizer = wordpiece_tokenizer()
    codec = Codec(tokenizer)
    text = "the cat sat on the mat " * 10
    tokenizer([text], truncation=True, max_length=5)  # leaves truncation on in the tokenizer's Rust tokenizer
    assert len(codec.encode([text])[0]) > 5
    assert codec.encode([text]) == tokenizer([text], add_special_tokens=True)["input_ids"]


class Delegating:
    """A tokenizer that forwards everything to a real one (subclasses change one behaviour)."""

    def __init__(self, tokenizer):
        self.inner = tokenizer

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    def decode(self, ids, **kwargs):
        return self.inner.decode(ids, **kwargs)


class Shouting(Delegating):
    def decode(self, ids, **kwargs):  # decodes unlike its Rust tokenizer
        return self.inner.decode(ids, **kwargs).upper()


class Slow(Delegating):
    is_fast = False


def test_codec_uses_the_tokenizer_when_its_rust_tokenizer_decodes_differently(caplog):
    tokenizer = Shouting(wordpiece_tokenizer())
    with caplog.at_level(logging.WARNING, logger="distilkit"):
        codec = Codec(tokenizer)
    assert codec._backend is None
    assert "does not match" in caplog.text
    ids = tokenizer(["the cat sat"])["input_ids"]
    assert codec.decode(ids, True) == ["THE CAT SAT"]
    assert codec.encode(["the cat sat"]) == ids


def test_codec_calls_a_slow_tokenizer_as_it_is():
    tokenizer = Slow(wordpiece_tokenizer())
    codec = Codec(tokenizer)
    assert codec._backend is None
    ids = tokenizer(HARD_CASES)["input_ids"]
    assert codec.encode(HARD_CASES) == ids
    assert codec.decode(ids) == [tokenizer.decode(i) for i in ids]


def test_codec_uses_a_tokenizer_whose_rust_tokenizer_it_cannot_copy(caplog):
    from tokenizers.pre_tokenizers import PreTokenizer

    class SpacesInPython:  # a custom pre-tokenizer: its tokenizer cannot be serialised
        def pre_tokenize(self, pretok):
            pretok.split(lambda _, text: text.split(" ", "removed"))

    tokenizer = wordpiece_tokenizer()
    tokenizer._tokenizer.pre_tokenizer = PreTokenizer.custom(SpacesInPython())
    with caplog.at_level(logging.WARNING, logger="distilkit"):
        codec = Codec(tokenizer)
    assert codec._backend is None and "cannot copy" in caplog.text
    ids = tokenizer(["the cat sat"])["input_ids"]
    assert codec.encode(["the cat sat"]) == ids
    assert codec.decode(ids, True) == [tokenizer.decode(ids[0], skip_special_tokens=True)]
