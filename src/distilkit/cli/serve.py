"""``distilkit serve``: the real-time inference server (the model cards' endpoints).

Its limits and batching flags are ``ServeSettings``' fields (``cli.options.config_command``), each
also read from ``DISTILKIT_<FIELD>``; the options here are how the models load.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import typer

from distilkit.cli.options import BACKEND_HELP, CALIBRATION_HELP, DTYPE_HELP, config_command
from distilkit.errors import UserError
from distilkit.serve.settings import CARD_MODELS, ServeSettings, parse_model_spec

E = "DISTILKIT_"


ENVVARS = {f.name: E + f.name.upper() for f in dataclasses.fields(ServeSettings)}


@config_command(ServeSettings, envvars=ENVVARS)
def serve(
    flags: dict[str, Any],
    model: list[str] = typer.Option(
        [], "--model", "-m", envvar=E + "MODEL",
        help="REF, NAME=REF or NAME:TASK=REF (repeatable). Default: the three card models."),
    dummy_weights: bool = typer.Option(False, "--dummy-weights", envvar=E + "DUMMY_WEIGHTS",
                                       help="Random weights of the real architectures (load tests)."),
    dtype: str = typer.Option("auto", "--dtype", envvar=E + "DTYPE",
                              help=DTYPE_HELP),
    device: str = typer.Option(None, "--device", envvar=E + "DEVICE"),
    compile: bool = typer.Option(False, "--compile", envvar=E + "COMPILE",
                                 help="torch.compile the encoders (~20 s warm-up; measured "
                                      "slower than the default engine on AVX512-BF16 CPUs)."),
    backend: str = typer.Option(None, "--backend", envvar=E + "BACKEND",
                                help=BACKEND_HELP),
    calibration: str = typer.Option(None, "--calibration", envvar=E + "CALIBRATION",
                                    help=CALIBRATION_HELP),
) -> None:
    """Serve models over HTTP: /score (card formats), /models/NAME, /invocations, KServe v1/v2, /metrics."""
    import logging

    import uvicorn

    from distilkit.serve.app import create_app

    settings = ServeSettings(**flags)
    # Loaded on a thread that then ends: the OpenMP team its loading opened goes with it, and the
    # scheduler's model thread stays the only one (see distilkit.serve.scheduler).
    with ThreadPoolExecutor(1, thread_name_prefix="distilkit-load") as loader:
        predictors = loader.submit(load_predictors, model, dummy_weights=dummy_weights, dtype=dtype,
                                   device=device, compile=compile, backend=backend,
                                   calibration=calibration).result()
    for predictor in predictors.values():
        predictor.announce()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings, predictors)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal into the handler it
    # found at start: make that handler a clean exit so a graceful stop ends with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log,
                timeout_graceful_shutdown=60)


def load_predictors(specs: list[str], **options) -> dict:
    """Load every ``--model`` spec (or the card models) into a name -> Predictor map.

    Raises:
        UserError: two specs with one name, or no spec and the card models not in the cache.
    """
    from distilkit.inference.predictor import Predictor
    from distilkit.models import ModelNotFoundError, TaskNotFoundError

    parsed = [parse_model_spec(s) for s in specs]
    if not parsed:
        try:
            return {ref: Predictor.from_ref(ref, **options) for ref in CARD_MODELS}
        except ModelNotFoundError as err:
            raise UserError(
                "no --model given and the card models (" + ", ".join(CARD_MODELS) + ") are not in the "
                "Hugging Face cache (offline or not downloaded yet). Serve a local model directory with "
                "--model DIR "
                "(or NAME=DIR, NAME:TASK=DIR; repeatable), and add --dummy-weights to run a directory that "
                f"holds only config.json and tokenizer files with random weights. ({err})"
            ) from err
    names = [p.name for p in parsed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UserError(f"two --model entries are named {duplicate!r}; name them with NAME=REF")
    predictors = {}
    for p in parsed:
        try:
            predictors[p.name] = Predictor.from_ref(p.ref, p.task, **options)
        except TaskNotFoundError as err:
            raise err.naming(f"--model {p.name}:TASK={p.ref}") from None
    return predictors
