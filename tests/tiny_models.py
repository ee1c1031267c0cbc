"""Tiny random-weight models and tokenizers of the real families, built offline in seconds."""

from __future__ import annotations

import string
from pathlib import Path

import torch

WORDS = [
    "the", "of", "and", "to", "in", "a", "is", "was", "for", "on", "as", "with", "by", "at", "from", "his",
    "her", "he", "she", "it", "that", "this", "are", "were", "be", "has", "have", "had", "an", "or", "not",
    "but", "which", "their", "they", "all", "one", "two", "new", "first", "after", "also", "who", "been",
    "its", "more", "Paris", "France", "capital", "city", "name", "John", "Seattle", "live", "where", "what",
    "my", "is", "day", "today", "good", "great", "river", "London", "Berlin", "Germany", "England", "company",
    "Microsoft", "Apple", "team", "game", "season", "won", "played", "music", "band",
]

TASK_CLASSES = {
    "fill-mask": "ForMaskedLM",
    "question-answering": "ForQuestionAnswering",
    "text-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
}

SMALL = {"hidden": 32, "layers": 2, "heads": 2, "ffn": 64, "max_positions": 128}


def wordpiece_tokenizer(lowercase: bool = False, max_length: int = 128):
    """A cased (or uncased) WordPiece tokenizer with [MASK], every ASCII char and ~100 words."""
    from transformers import DistilBertTokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    words = sorted({w.lower() if lowercase else w for w in WORDS})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars), *words]
    vocab = list(dict.fromkeys(vocab))
    return DistilBertTokenizer(
        vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=lowercase, model_max_length=max_length
    )


def bpe_tokenizer(max_length: int = 126):
    """A byte-level BPE tokenizer with RoBERTa's specials (<s> </s> <pad> <unk> <mask>)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    trainer = ByteLevelBPETokenizer()
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer.train_from_iterator(corpus, vocab_size=420, min_frequency=2, special_tokens=specials,
                                show_progress=False)
    import json

    state = json.loads(trainer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return RobertaTokenizer(vocab=state["vocab"], merges=merges, model_max_length=max_length)


def make_config(family: str, task: str, vocab_size: int, num_labels: int = 3, id2label=None, **over):
    """Config of a tiny ``family`` model (distilbert | bert | roberta) for ``task``."""
    from transformers import BertConfig, DistilBertConfig, RobertaConfig

    s = {**SMALL, **over}
    arch = {"distilbert": "DistilBert", "bert": "Bert", "roberta": "Roberta"}[family] + TASK_CLASSES[task]
    labels = {}
    if id2label is not None:
        labels = {"id2label": dict(enumerate(id2label)), "label2id": {l: i for i, l in enumerate(id2label)}}
    elif task in ("text-classification", "token-classification"):
        labels = {"num_labels": num_labels}
    if family == "distilbert":
        cfg = DistilBertConfig(vocab_size=vocab_size, dim=s["hidden"], n_layers=s["layers"],
                               n_heads=s["heads"], hidden_dim=s["ffn"],
                               max_position_embeddings=s["max_positions"], **labels)
    else:
        cls = BertConfig if family == "bert" else RobertaConfig
        extra = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2} if family == "roberta" else {}
        positions = s["max_positions"] + (2 if family == "roberta" else 0)
        cfg = cls(vocab_size=vocab_size, hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                  num_attention_heads=s["heads"], intermediate_size=s["ffn"],
                  max_position_embeddings=positions, **extra, **labels)
    for key, value in over.items():  # config fields beyond the sizes (problem_type, ...)
        if key not in SMALL:
            setattr(cfg, key, value)
    cfg.architectures = [arch]
    return cfg


def make_model_dir(path: Path, task: str, family: str = "distilbert", seed: int = 0, lowercase: bool = False,
                   **config_over) -> Path:
    """Save a tiny seeded model + tokenizer for ``task`` into ``path`` (HF layout, safetensors)."""
    import transformers

    tokenizer = bpe_tokenizer() if family == "roberta" else wordpiece_tokenizer(lowercase=lowercase)
    config = make_config(family, task, vocab_size=len(tokenizer), **config_over)
    torch.manual_seed(seed)
    model = getattr(transformers, config.architectures[0])(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
