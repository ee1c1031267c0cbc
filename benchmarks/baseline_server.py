"""The usual hand-made endpoint: a plain FastAPI app calling transformers.pipeline per request.

The peer of benchmarks/serve.py: `python benchmarks/baseline_server.py --model DIR --port N`.
Random weights of the real architecture (speed does not depend on weight values).
"""

from __future__ import annotations

import argparse

import torch
import uvicorn
from fastapi import FastAPI
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, pipeline


def build_app(model_dir: str) -> FastAPI:
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(model_dir)).eval()
    fill_mask = pipeline("fill-mask", model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir),
                         device=-1)
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    # sync: FastAPI runs it in its thread pool, one pipeline call per request
    @app.post("/predict")
    def predict(body: dict) -> list:
        return fill_mask(body["inputs"], **body.get("parameters", {}))

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")
