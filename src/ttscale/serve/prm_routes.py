"""The PRM server's routes (``POST /pooling``, ``GET /v1/models``, ``GET /health``), each a
method of one :class:`PrmRoutes` that holds the PRM and what the routes share, and the reading
of a pooling request."""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations
import json
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ttscale.rewards.hf_prm import HFProcessRewardModel
from ttscale.rewards.http_prm import FORMATS
from ttscale.serve.http import RequestError, check_api_key, read_body

BAD = "BadRequestError"  # vLLM's error type for a 400


def error_response(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


class PrmRoutes:
    """The routes serving one PRM as ``model_name``."""

    def __init__(self, prm: HFProcessRewardModel, model_name: str, api_key: str | None,
                 max_body_bytes: int) -> None:
        self.prm, self.model_name = prm, model_name
        self.api_key, self.max_body_bytes = api_key, max_body_bytes
        self.positive = FORMATS[prm.format_name].positive
        self.max_len = getattr(prm.backbone.config, "max_position_embeddings", None)
        # one batch at a time: concurrent passes would only compete for the same device memory
        self._lock = threading.Lock()

    async def pooling(self, request: Request):
        try:
            check_api_key(request.headers, self.api_key)
            texts = parse_request(await read_body(request, self.max_body_bytes),
                                  self.model_name)
            vectors, tokens = await run_in_threadpool(self._pool, texts)
        except RequestError as exc:
            return error_response(exc)
        return {"id": f"pool-{uuid.uuid4().hex}", "object": "list",
                "created": int(time.time()), "model": self.model_name,
                "data": [{"index": i, "object": "pooling", "data": v}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens,
                          "completion_tokens": 0, "prompt_tokens_details": None}}

    async def models(self, request: Request):
        try:
            check_api_key(request.headers, self.api_key)
        except RequestError as exc:
            return error_response(exc)
        return {"object": "list", "data": [{
            "id": self.model_name, "object": "model", "created": int(time.time()),
            "owned_by": "ttscale", "max_model_len": self.max_len}]}

    async def health(self):
        return Response(status_code=200)

    def _pool(self, texts: list[str]) -> tuple[list[list[list[float]]], int]:
        """Per text, one label pair per step tag, as vLLM's STEP pooler returns them; and the
        tokens read."""
        with self._lock:  # a fast tokenizer may not be used from two threads at once either
            encoded = [self.prm.encode_text(text) for text in texts]
            for item in encoded:
                if self.max_len is not None and len(item.input_ids) > self.max_len:
                    raise RequestError(400, f"This model's maximum context length is "
                                            f"{self.max_len} tokens. However, an input has "
                                            f"{len(item.input_ids)} tokens.", BAD)
            probabilities = self.prm.score_encoded(encoded)
        vectors = [[self._label_pair(p) for p in row] for row in probabilities]
        return vectors, sum(len(item.input_ids) for item in encoded)

    def _label_pair(self, p: float) -> list[float]:
        pair = [1.0 - p, 1.0 - p]
        pair[self.positive] = p
        return pair


def build_prm_app(routes: PrmRoutes) -> FastAPI:
    app = FastAPI(title="ttscale PRM server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/pooling", routes.pooling, methods=["POST"])
    app.add_api_route("/v1/models", routes.models, methods=["GET"])
    app.add_api_route("/health", routes.health, methods=["GET"])
    return app


def parse_request(raw: bytes, model_name: str) -> list[str]:
    """The input texts of a pooling request body, or a 400/404 saying what is wrong."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}", BAD) from exc
    if not isinstance(payload, dict):
        raise RequestError(400, "the body must be a JSON object with 'input'", BAD)
    model = payload.get("model")
    if model is not None and model != model_name:
        raise RequestError(404, f"The model `{model}` does not exist.", "NotFoundError")
    if payload.get("encoding_format", "float") != "float":
        raise RequestError(400, "only encoding_format 'float' is served", BAD)
    texts = payload.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise RequestError(400, "'input' must be a string or a non-empty list of strings "
                                "(this server takes text, not token ids or messages)", BAD)
    return texts
