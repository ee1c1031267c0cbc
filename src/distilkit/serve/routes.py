"""Routes per wire format; each one is a parser from ``serve.formats`` plus ``ModelServer.predict``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from distilkit.serve import formats
from distilkit.serve import openapi as doc
from distilkit.serve.server import ModelServer

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
        [{"score": 0.62, "token": 812, "token_str": " capital",
          "sequence": "Paris is the capital of France."},
         {"score": 0.05, "token": 1867, "token_str": " birthplace",
          "sequence": "Paris is the birthplace of France."}],
        [{"score": 0.31, "token": 205, "token_str": " good", "sequence": "Today is a good day!"},
         {"score": 0.12, "token": 372, "token_str": " great", "sequence": "Today is a great day!"}]],
}
STATUS = doc.obj(["status"], status=doc.STRING)
MODEL = doc.obj(["name", "task", "source", "dtype", "device", "engine"], name=doc.STRING, task=doc.STRING,
                source=doc.STRING, dtype=doc.STRING, device=doc.STRING, engine=doc.STRING)
TENSOR_META = doc.array(doc.obj(["name", "datatype", "shape"], name=doc.STRING, datatype=doc.STRING,
                                shape=doc.array(doc.INTEGER)))


class PredictionRoute(APIRoute):
    """A prediction route: declared and documented like any FastAPI route, run without FastAPI's
    per-request machinery (dependency solving, exit stacks, response validation).

    Its endpoint takes the ``Request`` and plain string parameters (path, query, header), which are
    read straight from the request: what FastAPI would hand it for ``str`` parameters, for about
    0.1 ms less of the event loop per request. That matters: on 2 cores each 0.1 ms of event-loop
    CPU per request cost ~4-5% of the throughput at 32-128 clients (the OpenMP team waits for the
    thread the loop preempts; ``benchmarks/serve.py``). Errors propagate to the app's exception
    handlers as from any route.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any):
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        for param in (*dependant.path_params, *dependant.query_params, *dependant.header_params):
            if param.field_info.annotation not in (str, str | None):
                raise TypeError(f"{path}: prediction route parameters are strings; "
                                f"{param.name!r} is {param.field_info.annotation}")
        if dependant.body_params or dependant.cookie_params or dependant.dependencies \
                or dependant.request_param_name != "request":
            raise TypeError(f"{path}: a prediction route takes `request: Request` and string parameters")
        path_params = [(p.name, p.alias) for p in dependant.path_params]
        query_params = [(p.name, p.alias) for p in dependant.query_params]
        header_params = [(p.name, p.alias.lower()) for p in dependant.header_params]

        async def app(scope: dict, receive: Callable, send: Callable) -> None:
            request = Request(scope, receive, send)
            kwargs = {name: scope["path_params"][alias] for name, alias in path_params}
            if query_params:
                query = request.query_params
                kwargs.update((name, query.get(alias)) for name, alias in query_params)
            if header_params:
                headers = request.headers
                kwargs.update((name, headers.get(alias)) for name, alias in header_params)
            response = await endpoint(request, **kwargs)
            await response(scope, receive, send)

        self.app = app


def post_prediction(app: FastAPI, path: str, **kwargs: Any) -> Callable[[Callable], Callable]:
    """``@app.post`` for a prediction route (``PredictionRoute``)."""
    def register(endpoint: Callable) -> Callable:
        app.router.add_api_route(path, endpoint, methods=["POST"], route_class_override=PredictionRoute,
                                 **kwargs)
        return endpoint
    return register


def ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": doc.json_content(schema)}


def add_routes(app: FastAPI, server: ModelServer) -> None:
    """Attach health, metadata and every prediction route to ``app``."""
    names = sorted(server.predictors)
    def model_query() -> Any:
        return Query(None, description="Model name when several are served",
                     json_schema_extra={"enum": names})

    def model_path() -> Any:
        return Path(description="A served model's name", json_schema_extra={"enum": names})

    @app.get("/health", tags=["health"], summary="Liveness", responses={200: ok(STATUS)})
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/ready", tags=["health"], summary="Readiness: models loaded",
             responses={200: ok(doc.obj(["status", "models"], status=doc.STRING,
                                        models=doc.array(doc.STRING))),
                        503: ok(STATUS, "Loading")})
    async def ready() -> JSONResponse:
        if not server.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "models": names})

    ready_body = doc.obj(["ready"], ready={"type": "boolean"})

    @app.get("/v2/health/ready", tags=["open inference protocol v2"],
             responses={200: ok(ready_body), 503: ok(ready_body, "Loading")})
    async def v2_ready() -> JSONResponse:
        return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)

    @app.get("/v2/health/live", tags=["open inference protocol v2"],
             responses={200: ok(doc.obj(["live"], live={"type": "boolean"}))})
    async def v2_live() -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"description": "Prometheus text format",
                              "content": {CONTENT_TYPE_LATEST: {"schema": doc.STRING}}}})
    async def metrics() -> Response:
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["models"], summary="Served models",
             responses={200: ok(doc.obj(["models"], models=doc.array(MODEL)))})
    async def list_models() -> JSONResponse:
        return JSONResponse({"models": [_describe(name, p) for name, p in server.predictors.items()]})

    @app.get("/v2/models/{name}", tags=["open inference protocol v2"],
             responses={200: ok(doc.obj(["name", "platform", "inputs", "outputs"], name=doc.STRING,
                                        platform=doc.STRING, inputs=TENSOR_META, outputs=TENSOR_META)),
                        **doc.errors(404, 422)})
    async def v2_metadata(name: str = model_path()) -> JSONResponse:
        name, predictor = server.model(name)
        inputs = ([{"name": "question", "datatype": "BYTES", "shape": [-1]},
                   {"name": "context", "datatype": "BYTES", "shape": [-1]}]
                  if predictor.task == "question-answering"
                  else [{"name": "text", "datatype": "BYTES", "shape": [-1]}])
        return JSONResponse({"name": name, "platform": "distilkit", "inputs": inputs,
                             "outputs": [{"name": "output", "datatype": "BYTES", "shape": [-1]}]})

    score_response = doc.array({"anyOf": [doc.TOP1, doc.RESULT]})

    @post_prediction(app, "/score", tags=["model cards"],
                     summary="Score with the model cards' request formats",
                     **doc.prediction_doc(doc.SCORE_REQUEST, score_response, "One of the three card formats",
                                          CARD_EXAMPLES, CARD_RESPONSES))
    async def score(
        request: Request,
        model: str | None = model_query(),
        deployment: str | None = Header(None, alias="azureml-model-deployment",
                                        json_schema_extra={"enum": names}),
    ) -> Response:
        return await server.predict(request, model or deployment, formats.parse_score_request)

    @post_prediction(app, "/models/{name}", tags=["hugging face inference"],
                     **doc.prediction_doc(doc.HF_REQUEST, {"anyOf": [doc.RESULT, doc.array(doc.RESULT)]},
                                          "Hugging Face inference API",
                                          {"fill-mask": {"inputs": "Paris is the [MASK] of France.",
                                                         "parameters": {"top_k": 2}}}))
    async def hf_inference(request: Request, name: str = model_path()) -> Response:
        return await server.predict(request, name, formats.parse_hf_request)

    @post_prediction(app, "/invocations", tags=["mlflow"],
                     **doc.prediction_doc(doc.MLFLOW_REQUEST, doc.PREDICTIONS, "MLflow scoring protocol", {
                         "dataframe_split": {"dataframe_split": {
                             "columns": ["input_string"], "data": [["Paris is the [MASK] of France."]]}},
                         "inputs": {"inputs": ["Paris is the [MASK] of France."], "params": {"top_k": 1}}}))
    async def invocations(request: Request, model: str | None = model_query()) -> Response:
        return await server.predict(request, model, formats.parse_mlflow_request)

    @post_prediction(app, "/v1/models/{name}:predict", tags=["kserve v1"],
                     **doc.prediction_doc(doc.KSERVE_REQUEST, doc.PREDICTIONS, "KServe v1",
                                          {"instances": {"instances": ["Paris is the [MASK] of France."]}}))
    async def kserve_v1(request: Request, name: str = model_path()) -> Response:
        return await server.predict(request, name, formats.parse_kserve_v1_request)

    @post_prediction(app, "/v2/models/{name}/infer", tags=["open inference protocol v2"],
                     **doc.prediction_doc(doc.V2_REQUEST, doc.V2_RESPONSE, "Open Inference Protocol v2", {
                         "text": {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                              "data": ["Paris is the [MASK] of France."]}]}}))
    async def v2_infer(request: Request, name: str = model_path()) -> Response:
        return await server.predict(request, name,
                                    lambda task, payload: formats.parse_v2_request(task, payload, name))

    # The router tries routes in order: the prediction routes first, ahead of FastAPI's docs and the
    # probes (a dozen path matches fewer per prediction; /openapi.json lists them first too).
    app.router.routes.sort(key=lambda route: not isinstance(route, PredictionRoute))


def _describe(name: str, predictor: Any) -> dict[str, Any]:
    # dtype: the engine's precision (int8 for either int8 engine, whose activations are bf16/fp32).
    return {"name": name, "task": predictor.task, "source": predictor.loaded.source,
            "dtype": predictor.engine.precision, "device": str(predictor.device),
            "engine": predictor.engine.describe(),
            **predictor.handler.describe()}  # parameters (+ mask_token | labels): what a form needs


__all__ = ["add_routes"]
