"""The QA peer: transformers 4.57.1's question-answering pipeline, timed per batch size.

Run by benchmarks/inference.py in the side environment made by benchmarks/setup_peer.sh
(transformers 5 has no question-answering pipeline). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer, pipeline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="directory with config.json and tokenizer files")
    parser.add_argument("--questions", required=True, help="JSON list of {question, context}")
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(args.model)
    model = AutoModelForQuestionAnswering.from_config(config).to(getattr(torch, args.dtype)).eval()
    qa = pipeline("question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(args.model),
                  device=-1)
    with open(args.questions, encoding="utf-8") as f:
        items = json.load(f)
    qa(items[:4], batch_size=4)  # warm-up
    seconds = {}
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        t = time.perf_counter()
        qa(items, batch_size=bs)
        seconds[bs] = time.perf_counter() - t
        print(f"  peer QA {args.dtype} batch_size={bs}: {len(items) / seconds[bs]:.1f} q/s", file=sys.stderr)
    best = min(seconds, key=seconds.get)
    print(json.dumps({"transformers": transformers.__version__, "seconds_by_batch_size": seconds,
                      "best_batch_size": best, "seconds": seconds[best]}))


if __name__ == "__main__":
    main()
