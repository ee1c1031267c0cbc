"""One inference stack of benchmarks/runtimes.py, timed in its own process (run by runtimes.py).

    python benchmarks/runtime_stacks.py --stack ort-int8 --work DIR --round 1

distilkit stacks (``distilkit-float32``, ``distilkit-float32-onnx``, ``distilkit-bfloat16``,
``distilkit-int8``) run in distilkit's environment through its Predictor. Peer stacks run in the
peers' environment (``bash benchmarks/setup_runtimes.sh``; optimum pins transformers < 4.58, so they
cannot share distilkit's): ``ort-fp32`` (optimum ``ORTModelFor*``, O3 graph optimisation),
``ort-int8`` (optimum's dynamic int8 with the AVX512-VNNI config), ``ov-f32`` / ``ov-bf16``
(optimum-intel ``OVModelFor*`` with that inference precision) and ``ov-int8`` (NNCF post-training
int8 of the OpenVINO model, calibrated on WikiText-2 sentences / SQuAD questions that are not timed).

Peers are used the way a competent user would: inputs sorted by length, batches padded to their
longest row, fill-mask as the encoder's graph (a feature-extraction export of the same weights)
with the MLM head applied in PyTorch to the masked positions only (as distilkit does; the head in
bf16 for ``ov-bf16``, fp32 otherwise), QA as the start/end logits of every 384/128 window, decoded
into answers exactly as the transformers QA pipeline decodes them, and the batch size that is
fastest for that stack and workload. Reads
``DIR/workloads.json`` and the model directories under ``DIR/models``; writes
``DIR/results/<stack>-<round>.json``: seconds per workload, the decisions (fill-mask top-1 token id,
QA answer span) and the preparation time (export, optimisation, quantisation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DISTILKIT = {
    "distilkit-float32": "float32", "distilkit-float32-onnx": "float32",
    "distilkit-bfloat16": "bfloat16", "distilkit-int8": "int8", "distilkit-int8-onnx": "int8",
}
PEERS = ("ort-fp32", "ort-int8", "ov-f32", "ov-bf16", "ov-int8")
QA_MAX_LEN, QA_STRIDE, QA_MAX_ANSWER = 384, 128, 15
QA_CANDIDATES = 12  # the pipeline's top_k * 2 + 10 candidates per window for top_k 1


def best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# --- distilkit -----------------------------------------------------------------------------------
def distilkit_runner(stack: str, models: dict[str, Path], task: str):
    """distilkit as a user runs it: ``--dtype`` (and ``--backend onnx`` for its ONNX Runtime graphs);
    the ONNX graphs are exported on first use into $DISTILKIT_HOME/cache (runtimes.py points it at DIR)."""
    from distilkit.inference.predictor import Predictor

    backend = "onnx" if stack.endswith("-onnx") else None
    predictor = Predictor.from_ref(models[task], task, dtype=DISTILKIT[stack], backend=backend)

    def run(items: list[Any], batch_size: int | None) -> list[Any]:
        if task == "fill-mask":
            out = predictor.predict(items, {"top_k": 1})
            return [int(r[0]["token"]) for r in out]
        out = predictor.predict(items)
        return [[int(r["start"]), int(r["end"])] for r in out]

    return run


# --- peers ---------------------------------------------------------------------------------------
def ort_session_options():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def load_ort(stack: str, model_dir: Path, task: str, work: Path):
    from optimum.onnxruntime import (
        ORTModelForFeatureExtraction,
        ORTModelForQuestionAnswering,
        ORTOptimizer,
        ORTQuantizer,
    )
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    cls = ORTModelForFeatureExtraction if task == "fill-mask" else ORTModelForQuestionAnswering
    kind = "fill-mask-encoder" if task == "fill-mask" else task  # fill-mask: the encoder graph
    base = work / "exports" / f"ort-{kind}"
    if not (base / "model.onnx").exists():
        cls.from_pretrained(model_dir, export=True).save_pretrained(base)
    if stack == "ort-fp32":
        target, file_name = work / "exports" / f"ort-o3-{kind}", "model_optimized.onnx"
        if not (target / file_name).exists():
            optimizer = ORTOptimizer.from_pretrained(cls.from_pretrained(base))
            optimizer.optimize(AutoOptimizationConfig.O3(), save_dir=target)
    else:
        target, file_name = work / "exports" / f"ort-int8-{kind}", "model_quantized.onnx"
        if not (target / file_name).exists():
            quantizer = ORTQuantizer.from_pretrained(base)
            quantizer.quantize(AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True),
                               save_dir=target)
    return cls.from_pretrained(target, file_name=file_name, session_options=ort_session_options())


def load_ov(stack: str, model_dir: Path, task: str, work: Path, calibration: list[dict]):
    from optimum.intel import OVModelForFeatureExtraction, OVModelForQuestionAnswering

    cls = OVModelForFeatureExtraction if task == "fill-mask" else OVModelForQuestionAnswering
    kind = "fill-mask-encoder" if task == "fill-mask" else task  # fill-mask: the encoder graph
    base = work / "exports" / f"ov-{kind}"
    if not (base / "openvino_model.xml").exists():
        cls.from_pretrained(model_dir, export=True, compile=False).save_pretrained(base)
    precision = {"ov-f32": "f32", "ov-bf16": "bf16"}.get(stack)
    if precision:
        return cls.from_pretrained(base, ov_config={"INFERENCE_PRECISION_HINT": precision,
                                                   "PERFORMANCE_HINT": "LATENCY"})
    target = work / "exports" / f"ov-int8-{kind}"
    if not (target / "openvino_model.xml").exists():
        import nncf
        import openvino as ov

        model = cls.from_pretrained(base, compile=False)
        names = [i.get_any_name() for i in model.model.inputs]
        samples = [{k: np.asarray(v)[None] for k, v in c.items() if k in names} for c in calibration]
        quantized = nncf.quantize(model.model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(samples))
        target.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, target / "openvino_model.xml")
        for f in base.iterdir():
            if f.suffix not in (".xml", ".bin"):
                (target / f.name).write_bytes(f.read_bytes())
    return cls.from_pretrained(target, ov_config={"PERFORMANCE_HINT": "LATENCY"})


def qa_windows(tokenizer, items: list[dict]) -> dict[str, Any]:
    """Every 384/128 window of every question, as the transformers QA pipeline cuts them."""
    enc = tokenizer([i["question"] for i in items], [i["context"] for i in items], truncation="only_second",
                    max_length=QA_MAX_LEN, stride=QA_STRIDE, return_overflowing_tokens=True,
                    return_offsets_mapping=True)
    enc["context_mask"] = [[s == 1 for s in enc.sequence_ids(w)] for w in range(len(enc["input_ids"]))]
    return enc


def qa_best_spans(items, enc, starts, ends) -> list[list[int]]:
    """Per question, the (char start, char end) of its answer, decoded as the transformers QA pipeline
    does: per window a softmax over the context tokens and [CLS], the 12 best spans with start <= end
    < start + 15, each widened to whole words; answers with the same text (any case) add their
    scores over all windows, and the best total wins."""
    totals: list[dict[str, list]] = [{} for _ in items]
    for w, item in enumerate(enc["overflow_to_sample_mapping"]):
        ctx = np.asarray(enc["context_mask"][w])
        keep = ctx.copy()
        keep[0] = True  # [CLS] shares the softmax; it is never an answer
        s = np.where(keep, starts[w][: len(ctx)], -1e4)
        e = np.where(keep, ends[w][: len(ctx)], -1e4)
        ps, pe = np.exp(s - s.max()), np.exp(e - e.max())
        ps, pe = np.where(ctx, ps / ps.sum(), 0.0), np.where(ctx, pe / pe.sum(), 0.0)
        flat = np.triu(np.tril(np.outer(ps, pe), QA_MAX_ANSWER - 1)).ravel()
        top = np.argpartition(-flat, QA_CANDIDATES)[:QA_CANDIDATES]
        for k in top[np.argsort(-flat[top], kind="stable")]:
            i, j = np.unravel_index(int(k), (len(ctx), len(ctx)))
            if not (ctx[i] and ctx[j]):
                continue
            span = [enc.word_to_chars(w, enc.token_to_word(w, int(i)), sequence_index=1).start,
                    enc.word_to_chars(w, enc.token_to_word(w, int(j)), sequence_index=1).end]
            text = items[item]["context"][span[0]:span[1]].lower()
            entry = totals[item].setdefault(text, [0.0, span])
            entry[0] += float(flat[k])
    answers = []
    for per_text in totals:
        best = None
        for score, span in per_text.values():  # first seen wins a tie, as in the pipeline's stable sort
            if best is None or score > best[0]:
                best = (score, span)
        answers.append(best[1])
    return answers


def mlm_head(model_dir: Path, dtype):
    """DistilBERT's MLM head (transform, GELU, LayerNorm, vocabulary projection) from the checkpoint,
    applied by the peers' fill-mask runners to the masked positions only."""
    import torch
    from transformers import AutoModelForMaskedLM

    mlm = AutoModelForMaskedLM.from_pretrained(model_dir).to(dtype).eval()
    if not hasattr(mlm, "vocab_projector"):
        raise ValueError(f"{type(mlm).__name__}: the peers' mask-only head is written for DistilBERT")
    layers = torch.nn.Sequential(mlm.vocab_transform, mlm.activation, mlm.vocab_layer_norm,
                                 mlm.vocab_projector)

    def head(rows):
        return layers(rows.to(dtype))

    return head


def peer_runner(stack: str, models: dict[str, Path], task: str, work: Path, calibration: list[dict]):
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model_dir = models[task]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if stack.startswith("ov-"):
        if task == "fill-mask":
            cal = [dict(tokenizer(t)) for t in calibration]
        else:
            enc = qa_windows(tokenizer, calibration)
            cal = [{k: enc[k][w] for k in ("input_ids", "attention_mask") if k in enc}
                   for w in range(len(enc["input_ids"]))]
        model = load_ov(stack, model_dir, task, work, cal)
    else:
        model = load_ort(stack, model_dir, task, work)
    mask_id = tokenizer.mask_token_id
    head_dtype = torch.bfloat16 if stack == "ov-bf16" else torch.float32
    head = mlm_head(model_dir, head_dtype) if task == "fill-mask" else None

    def run_fill_mask(texts: list[str], batch_size: int) -> list[int]:
        ids = tokenizer(texts)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        top1 = [0] * len(texts)
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
                rows, cols = (batch["input_ids"] == mask_id).nonzero(as_tuple=True)
                best = head(hidden[rows, cols]).argmax(-1)
            for r, token in zip(rows.tolist(), best.tolist(), strict=True):
                top1[idx[r]] = int(token)
        return top1

    def run_qa(items: list[dict], batch_size: int) -> list[list[int]]:
        enc = qa_windows(tokenizer, items)
        n = len(enc["input_ids"])
        order = sorted(range(n), key=lambda w: len(enc["input_ids"][w]))
        starts: list[Any] = [None] * n
        ends: list[Any] = [None] * n
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            batch = tokenizer.pad({"input_ids": [enc["input_ids"][w] for w in idx]}, return_tensors="pt")
            with torch.inference_mode():
                out = model(**batch)
            for r, w in enumerate(idx):
                starts[w] = out.start_logits[r].float().numpy()
                ends[w] = out.end_logits[r].float().numpy()
        return qa_best_spans(items, enc, starts, ends)

    return run_fill_mask if task == "fill-mask" else run_qa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, choices=sorted(DISTILKIT) + list(PEERS))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per workload (best is kept)")
    parser.add_argument("--batch-sizes", default="8,32", help="peers: batch sizes tried (the best is kept)")
    args = parser.parse_args()
    spec = json.loads((args.work / "workloads.json").read_text())
    models = {task: args.work / "models" / task for task in ("fill-mask", "question-answering")}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    result: dict[str, Any] = {"stack": args.stack, "round": args.round, "prepare_s": {}, "workloads": {}}
    runners = {}
    for task in ("fill-mask", "question-answering"):
        t = time.perf_counter()
        if args.stack in DISTILKIT:
            runners[task] = distilkit_runner(args.stack, models, task)
        else:
            runners[task] = peer_runner(args.stack, models, task, args.work, spec["calibration"][task])
        result["prepare_s"][task] = round(time.perf_counter() - t, 1)
    for name, workload in spec["workloads"].items():
        run, items = runners[workload["task"]], workload["items"]
        sizes = [None] if args.stack in DISTILKIT else batch_sizes
        seconds, decisions = {}, None
        for bs in sizes:
            run(items[:16], bs)  # warm-up (shapes, caches)
            decisions = run(items, bs)
            seconds[str(bs)] = best_seconds(lambda run=run, items=items, bs=bs: run(items, bs), args.repeats)
        best = min(seconds, key=seconds.get)
        if len(sizes) > 1:
            decisions = run(items, int(best))
        result["workloads"][name] = {"seconds": seconds[best], "batch_size": best,
                                     "seconds_by_batch_size": seconds, "decisions": decisions}
        print(f"  {args.stack} {name}: {len(items) / seconds[best]:.1f}/s (batch size {best})",
              file=sys.stderr, flush=True)
    out = args.work / "results" / f"{args.stack}-{args.round}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
