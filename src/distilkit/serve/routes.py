"""Routes per wire format; each one is a parser from ``serve.formats`` plus ``ModelServer.predict``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from distilkit.serve import formats
from distilkit.serve.app import ApiError, ModelServer

# Request examples from the model cards, shown in /docs.
CARD_EXAMPLES = {
    "fill-mask (distilbert-base-cased card)": {"input_data": ["Paris is [MASK] of France"], "params": {}},
    "question-answering (distilbert-base-cased-distilled-squad card)": {"inputs": {
        "question": ["What is my name?", "Where do I live?"],
        "context": ["My name is John and I live in Seattle.", "My name is Ravi and I live in Hyderabad."]}},
    "fill-mask with top_k (distilroberta-base card)": {
        "inputs": {"input_string": ["Paris is the <mask> of France.", "Today is a <mask> day!"]},
        "parameters": {"top_k": 2}},
}
# The responses the cards show for those requests (shapes; values from a real model).
CARD_RESPONSES = {
    "fill-mask (input_data)": ["part"],
    "question-answering": [{"score": 0.99, "start": 11, "end": 15, "answer": "John"},
                           {"score": 0.98, "start": 11, "end": 15, "answer": "Ravi"}],
    "fill-mask with top_k (input_string)": [
        [{"score": 0.62, "token": 812, "token_str": " capital", "sequence": "Paris is the capital of France."},
         {"score": 0.05, "token": 1867, "token_str": " birthplace", "sequence": "Paris is the birthplace of France."}],
        [{"score": 0.31, "token": 205, "token_str": " good", "sequence": "Today is a good day!"},
         {"score": 0.12, "token": 372, "token_str": " great", "sequence": "Today is a great day!"}]],
}
ANY_JSON = {"type": "object", "additionalProperties": True}


def body_doc(examples: dict[str, Any], summary: str) -> dict[str, Any]:
    """OpenAPI request body with named examples (the body is parsed by our own format code)."""
    return {"requestBody": {"required": True, "description": summary, "content": {"application/json": {
        "schema": ANY_JSON, "examples": {k: {"value": v} for k, v in examples.items()}}}}}


def add_routes(app: FastAPI, server: ModelServer) -> None:
    """Attach health, metadata and every prediction route to ``app``."""

    @app.get("/health", tags=["health"], summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], summary="Readiness: models loaded")
    async def ready() -> JSONResponse:
        if not server.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "models": sorted(server.predictors)})

    @app.get("/v2/health/ready", tags=["open inference protocol v2"])
    async def v2_ready() -> JSONResponse:
        return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)

    @app.get("/v2/health/live", tags=["open inference protocol v2"])
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["models"], summary="Served models")
    async def list_models() -> dict[str, Any]:
        return {"models": [_describe(name, p) for name, p in server.predictors.items()]}

    @app.get("/v2/models/{name}", tags=["open inference protocol v2"])
    async def v2_metadata(name: str) -> dict[str, Any]:
        name, predictor = server.model(name)
        inputs = ([{"name": "question", "datatype": "BYTES", "shape": [-1]},
                   {"name": "context", "datatype": "BYTES", "shape": [-1]}]
                  if predictor.task == "question-answering" else [{"name": "text", "datatype": "BYTES", "shape": [-1]}])
        return {"name": name, "platform": "distilkit", "inputs": inputs,
                "outputs": [{"name": "output", "datatype": "BYTES", "shape": [-1]}]}

    @app.post("/score", tags=["model cards"], summary="Score with the model cards' request formats",
              openapi_extra=body_doc(CARD_EXAMPLES, "One of the three card formats"),
              responses={200: {"description": "The card's response shape for the request's format",
                               "content": {"application/json": {"examples": {
                                   k: {"value": v} for k, v in CARD_RESPONSES.items()}}}}})
    async def score(
        request: Request,
        model: str | None = Query(None, description="Model name when several are served"),
        deployment: str | None = Header(None, alias="azureml-model-deployment"),
    ) -> Any:
        return await server.predict(request, model or deployment, formats.parse_score_request)

    @app.post("/models/{name}", tags=["hugging face inference"],
              openapi_extra=body_doc({"fill-mask": {"inputs": "Paris is the [MASK] of France.",
                                                    "parameters": {"top_k": 2}}}, "Hugging Face inference API"))
    async def hf_inference(request: Request, name: str) -> Any:
        return await server.predict(request, name, formats.parse_hf_request)

    @app.post("/invocations", tags=["mlflow"],
              openapi_extra=body_doc({"dataframe_split": {"dataframe_split": {
                  "columns": ["input_string"], "data": [["Paris is the [MASK] of France."]]}},
                  "inputs": {"inputs": ["Paris is the [MASK] of France."], "params": {"top_k": 1}}},
                  "MLflow scoring protocol"))
    async def invocations(request: Request, model: str | None = Query(None)) -> Any:
        return await server.predict(request, model, formats.parse_mlflow_request)

    @app.post("/v1/models/{name}:predict", tags=["kserve v1"],
              openapi_extra=body_doc({"instances": {"instances": ["Paris is the [MASK] of France."]}}, "KServe v1"))
    async def kserve_v1(request: Request, name: str) -> Any:
        return await server.predict(request, name, formats.parse_kserve_v1_request)

    @app.post("/v2/models/{name}/infer", tags=["open inference protocol v2"],
              openapi_extra=body_doc({"text": {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                           "data": ["Paris is the [MASK] of France."]}]}},
                                     "Open Inference Protocol v2"))
    async def v2_infer(request: Request, name: str) -> Any:
        return await server.predict(request, name, lambda task, payload: formats.parse_v2_request(task, payload, name))


def _describe(name: str, predictor: Any) -> dict[str, Any]:
    return {"name": name, "task": predictor.task, "source": predictor.loaded.source,
            "dtype": str(predictor.dtype).replace("torch.", ""), "device": str(predictor.device),
            **predictor.handler.describe()}  # parameters (+ mask_token | labels): what a form needs


__all__ = ["add_routes", "ApiError"]
