"""``distilkit serve``: the real-time inference server (the model cards' endpoints)."""

from __future__ import annotations

import signal
import sys

import typer

from distilkit.serve.settings import CARD_MODELS, ServeSettings, parse_model_spec

E = "DISTILKIT_"


def serve(
    model: list[str] = typer.Option([], "--model", "-m", envvar=E + "MODEL",
                                    help="REF, NAME=REF or NAME:TASK=REF (repeatable). Default: the three card models."),
    dummy_weights: bool = typer.Option(False, "--dummy-weights", envvar=E + "DUMMY_WEIGHTS",
                                       help="Random weights of the real architectures (load tests)."),
    host: str = typer.Option("127.0.0.1", "--host", envvar=E + "HOST"),
    port: int = typer.Option(8000, "--port", envvar=E + "PORT"),
    api_key: str = typer.Option(None, "--api-key", envvar=E + "API_KEY",
                                help="Require 'Authorization: Bearer KEY' (health and metrics stay open)."),
    max_batch_size: int = typer.Option(32, "--max-batch-size", envvar=E + "MAX_BATCH_SIZE"),
    max_batch_tokens: int = typer.Option(4096, "--max-batch-tokens", envvar=E + "MAX_BATCH_TOKENS"),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms", envvar=E + "MAX_WAIT_MS"),
    max_queue: int = typer.Option(1024, "--max-queue", envvar=E + "MAX_QUEUE"),
    timeout_s: float = typer.Option(30.0, "--timeout-s", envvar=E + "TIMEOUT_S"),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", envvar=E + "MAX_BODY_BYTES"),
    max_inputs: int = typer.Option(64, "--max-inputs", envvar=E + "MAX_INPUTS"),
    dtype: str = typer.Option("auto", "--dtype", envvar=E + "DTYPE", help="auto | float32 | bfloat16."),
    device: str = typer.Option(None, "--device", envvar=E + "DEVICE"),
    compile: bool = typer.Option(False, "--compile", envvar=E + "COMPILE",
                                 help="torch.compile the encoders (slower start, faster batches)."),
    backend: str = typer.Option(None, "--backend", envvar=E + "BACKEND",
                                help="torch | onnx (default: onnx for an exported directory)."),
    playground: bool = typer.Option(True, "--playground/--no-playground", envvar=E + "PLAYGROUND",
                                    help="The browser page at / to try every served model."),
) -> None:
    """Serve models over HTTP: /score (card formats), /models/NAME, /invocations, KServe v1/v2, /metrics."""
    import logging

    import uvicorn

    from distilkit.serve.app import create_app

    settings = ServeSettings(host=host, port=port, api_key=api_key, max_batch_size=max_batch_size,
                             max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, max_queue=max_queue,
                             timeout_s=timeout_s, max_body_bytes=max_body_bytes, max_inputs=max_inputs,
                             playground=playground)
    predictors = load_predictors(model, dummy_weights=dummy_weights, dtype=dtype, device=device, compile=compile,
                                 backend=backend)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings, predictors)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal into the handler it
    # found at start: make that handler a clean exit so a graceful stop ends with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=60)


def load_predictors(specs: list[str], **options) -> dict:
    """Load every ``--model`` spec (or the card models) into a name -> Predictor map."""
    from distilkit.inference.predictor import Predictor
    from distilkit.models import ModelNotFoundError, TaskNotFoundError

    parsed = [parse_model_spec(s) for s in specs]
    if not parsed:
        try:
            return {ref: Predictor.from_ref(ref, **options) for ref in CARD_MODELS}
        except ModelNotFoundError as err:
            raise ValueError(
                "no --model given and the card models (" + ", ".join(CARD_MODELS) + ") are not in the Hugging "
                "Face cache (offline or not downloaded yet). Serve a local model directory with --model DIR "
                "(or NAME=DIR, NAME:TASK=DIR; repeatable), and add --dummy-weights to run a directory that "
                f"holds only config.json and tokenizer files with random weights. ({err})"
            ) from err
    names = [p.name for p in parsed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ValueError(f"two --model entries are named {duplicate!r}; name them with NAME=REF")
    predictors = {}
    for p in parsed:
        try:
            predictors[p.name] = Predictor.from_ref(p.ref, p.task, **options)
        except TaskNotFoundError as err:
            raise err.naming(f"--model {p.name}:TASK={p.ref}") from None
    return predictors
