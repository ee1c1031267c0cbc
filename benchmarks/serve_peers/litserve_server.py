"""LitServe peer: the fill-mask model behind LitServe's dynamic batching (max batch 32).

    python benchmarks/serve_peers/litserve_server.py --model DIR --port N

Its documented high-throughput setup: ``max_batch_size``/``batch_timeout`` on the LitAPI, the
ZeroMQ queue (``fast_queue``, recommended above ~100 requests/s), one worker per device on CPU.
Body ``{"inputs": text}`` -> the pipeline's candidate list.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import litserve as ls

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import FillMask


class FillMaskAPI(ls.LitAPI):
    def __init__(self, model_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.model_dir = model_dir

    def setup(self, device):
        self.model = FillMask(self.model_dir)

    def decode_request(self, request):
        return request["inputs"]

    def predict(self, texts):  # a list of up to max_batch_size texts
        return self.model(texts)

    def encode_response(self, output):
        return output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    api = FillMaskAPI(args.model, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, timeout=120,
                          fast_queue=True)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, generate_client_file=False,
               log_level="warning")


if __name__ == "__main__":
    main()
