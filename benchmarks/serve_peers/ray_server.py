"""Ray Serve peer: the fill-mask model in a deployment with ``@serve.batch`` (max batch 32).

    python benchmarks/serve_peers/ray_server.py --model DIR --port N

As Ray Serve's batching guide writes it: an async ``@serve.batch`` method the HTTP handler awaits,
``max_ongoing_requests`` above the batch size so batches can fill, one replica holding every CPU
(its PyTorch threads follow the replica's ``num_cpus``). Body ``{"inputs": text}`` at ``/predict``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import ray
from ray import serve
from starlette.requests import Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import FillMask

CPUS = len(os.sched_getaffinity(0))


@serve.deployment(max_ongoing_requests=512, ray_actor_options={"num_cpus": CPUS})
class FillMaskDeployment:
    def __init__(self, model_dir: str):
        self.model = FillMask(model_dir)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[list[dict]]:
        return self.model(texts)

    async def __call__(self, request: Request) -> list[dict]:
        body = await request.json()
        return await self.predict(body["inputs"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8003)
    args = parser.parse_args()
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(FillMaskDeployment.bind(args.model), route_prefix="/predict")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
