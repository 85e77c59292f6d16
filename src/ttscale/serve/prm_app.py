"""A small PRM server: the part of vLLM's API that ``HTTPProcessRewardModel`` speaks, backed
by an in-process ttscale PRM, so the policy and the PRM can run as two servers without vLLM.

* ``POST /pooling`` with ``{"model": ..., "input": [texts]}``: each text is tokenized as the
  format's ``encode`` does, the backbone runs once per micro-batch, and the answer holds, per
  input, one 2-vector per step-tag token in vLLM's order (Qwen2.5-Math-PRM: [incorrect,
  correct]; Math-Shepherd: ['+', '-']), as vLLM's STEP pooler would return it;
* ``GET /v1/models`` and ``GET /health``.

Run it as ``python -m ttscale.serve.prm_app --prm qwen-prm:/path/to/checkpoint --port 8001``. It
binds 127.0.0.1 unless told otherwise; give ``--api-key`` before binding anything wider. The
routes are in :mod:`ttscale.serve.prm_routes`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ttscale.errors import ConfigError, TTScaleError
from ttscale.rewards import SCORERS
from ttscale.rewards.hf_prm import HFProcessRewardModel
from ttscale.rewards.http_prm import FORMATS
from ttscale.serve.http import LOCAL_HOSTS

logger = logging.getLogger(__name__)

# the formats whose scores are read at a step tag: the ones an HTTP PRM client can send
SERVED = FORMATS
DEFAULT_MAX_BODY_BYTES = 8 * 2**20


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
    # imported here: fastapi is the server extra's, and this module is read without it
    from ttscale.serve.prm_routes import PrmRoutes, build_prm_app

    if prm.format_name not in SERVED:
        raise ConfigError(f"the PRM server serves the {' and '.join(SERVED)} formats, whose "
                          f"scores are read at a step tag; not {prm.format_name}")
    return build_prm_app(PrmRoutes(prm, model_name, api_key, max_body_bytes))


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
