"""A small PRM server: the part of vLLM's API that ``HTTPProcessRewardModel`` speaks, backed
by an in-process ttscale PRM, so the policy and the PRM can run as two servers without vLLM.

* ``POST /pooling`` with ``{"model": ..., "input": [texts]}``: each text is tokenized as the
  format's ``encode`` does, the backbone runs once per micro-batch, and the answer holds, per
  input, one 2-vector per step-tag token in vLLM's order (Qwen2.5-Math-PRM: [incorrect,
  correct]; Math-Shepherd: ['+', '-']), as vLLM's STEP pooler would return it;
* ``GET /v1/models`` and ``GET /health``.

Run it as ``python -m ttscale.serve.prm_app --prm qwen-prm:/path/to/checkpoint --port 8001``. It
binds 127.0.0.1 unless told otherwise; give ``--api-key`` before binding anything wider."""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations, whose
# types are imported inside create_app
import argparse
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence

from ttscale.errors import ConfigError, TTScaleError
from ttscale.rewards import SCORERS
from ttscale.rewards.hf_prm import HFProcessRewardModel
from ttscale.rewards.http_prm import FORMATS
from ttscale.serve.http import LOCAL_HOSTS, RequestError, check_api_key, read_body

logger = logging.getLogger(__name__)

# the formats whose scores are read at a step tag: the ones an HTTP PRM client can send
SERVED = FORMATS
DEFAULT_MAX_BODY_BYTES = 8 * 2**20
BAD = "BadRequestError"  # vLLM's error type for a 400


def load_prm(spec: str, *, device: str = "cpu", dtype: str = "auto",
             trust_remote_code: bool = False) -> HFProcessRewardModel:
    """The PRM that ``FORMAT:PATH`` names, loaded in-process."""
    name, _, path = spec.partition(":")
    if name not in SERVED or not path:
        raise ConfigError(f"--prm takes FORMAT:PATH with FORMAT {' or '.join(SERVED)}, e.g. "
                          f"qwen-prm:/models/Qwen2.5-Math-PRM-7B; got {spec!r}")
    cls = SCORERS.get(name)
    return cls(path, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def create_app(prm: HFProcessRewardModel, model_name: str, *, api_key: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
    """The FastAPI app serving ``prm`` as ``model_name``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    if prm.format_name not in SERVED:
        raise ConfigError(f"the PRM server serves the {' and '.join(SERVED)} formats, whose "
                          f"scores are read at a step tag; not {prm.format_name}")
    positive = SERVED[prm.format_name].positive
    max_len = getattr(prm.backbone.config, "max_position_embeddings", None)
    # one batch at a time: concurrent passes would only compete for the same device memory
    lock = threading.Lock()
    app = FastAPI(title="ttscale PRM server", docs_url=None, redoc_url=None, openapi_url=None)

    def error(exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    def authorize(request: Request) -> None:
        check_api_key(request.headers, api_key)

    def pool(texts: list[str]) -> tuple[list[list[list[float]]], int]:
        with lock:  # a fast tokenizer may not be used from two threads at once either
            encoded = [prm.encode_text(text) for text in texts]
            for item in encoded:
                if max_len is not None and len(item.input_ids) > max_len:
                    raise RequestError(400, f"This model's maximum context length is {max_len} "
                                            f"tokens. However, an input has "
                                            f"{len(item.input_ids)} tokens.", BAD)
            probabilities = prm.score_encoded(encoded)
        vectors = [[label_pair(p) for p in row] for row in probabilities]
        return vectors, sum(len(item.input_ids) for item in encoded)

    def label_pair(p: float) -> list[float]:
        pair = [1.0 - p, 1.0 - p]
        pair[positive] = p
        return pair

    @app.post("/pooling")
    async def pooling(request: Request):
        try:
            authorize(request)
            texts = parse_request(await read_body(request, max_body_bytes), model_name)
            vectors, tokens = await run_in_threadpool(pool, texts)
        except RequestError as exc:
            return error(exc)
        return {"id": f"pool-{uuid.uuid4().hex}", "object": "list",
                "created": int(time.time()), "model": model_name,
                "data": [{"index": i, "object": "pooling", "data": v}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens,
                          "completion_tokens": 0, "prompt_tokens_details": None}}

    @app.get("/v1/models")
    async def models(request: Request):
        try:
            authorize(request)
        except RequestError as exc:
            return error(exc)
        return {"object": "list", "data": [{
            "id": model_name, "object": "model", "created": int(time.time()),
            "owned_by": "ttscale", "max_model_len": max_len}]}

    @app.get("/health")
    async def health():
        return Response(status_code=200)

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


def serve(prm: HFProcessRewardModel | str, *, host: str = "127.0.0.1", port: int = 8001,
          api_key: str | None = None, model_name: str | None = None, device: str = "cpu",
          dtype: str = "auto", threads: int | None = None,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, log_level: str = "info") -> None:
    """Serve a PRM (loaded, or ``FORMAT:PATH``) until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("the PRM server needs fastapi and uvicorn: "
                          "pip install 'ttscale[server]'") from exc
    api_key = api_key or None
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if isinstance(prm, str):
        prm = load_prm(prm, device=device, dtype=dtype)
    if api_key is None and host not in LOCAL_HOSTS:
        logger.warning("serving on %s without an API key: anyone who can reach it can use it",
                       host)
    app = create_app(prm, model_name or prm.path.name, api_key=api_key,
                     max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ttscale.serve.prm_app",
        description="Serve a PRM checkpoint over vLLM's pooling API (POST /pooling).")
    parser.add_argument("--prm", required=True,
                        help="FORMAT:PATH, FORMAT qwen-prm or math-shepherd, PATH a local "
                             "checkpoint folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--api-key", default=None,
                        help="require 'Authorization: Bearer KEY' on /pooling and /v1/models")
    parser.add_argument("--served-model-name", default=None,
                        help="model name to serve as (default: the checkpoint folder's name)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")
    try:
        serve(args.prm, host=args.host, port=args.port, api_key=args.api_key,
              model_name=args.served_model_name, device=args.device, dtype=args.dtype,
              threads=args.threads, max_body_bytes=args.max_body_bytes,
              log_level=args.log_level)
    except (TTScaleError, ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
