"""``ttscale serve``: the OpenAI-compatible server, on the embedded model by default."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.options import (
    BaseUrlOpt,
    DeviceOpt,
    DtypeOpt,
    EngineOpt,
    ModelOpt,
    ParamsOpt,
    PrmDeviceOpt,
    PrmDtypeOpt,
    PrmFormatOpt,
    PrmParamsOpt,
    PromptOpt,
    TemplateOpt,
    ThreadsOpt,
    TrustOpt,
    fail,
    load_engine,
    out,
    prompt_format,
    scorer_options,
)
from ttscale.errors import TTScaleError


def serve(
    host: Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps it local")
                    ] = "127.0.0.1",
    port: int = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="TTSCALE_API_KEY", help="require 'Authorization: Bearer KEY' (env "
                                       "TTSCALE_API_KEY)")] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="the model name clients send (default: the policy's name)")] = None,
    method: Annotated[str, typer.Option(
        help="search for requests that name none: auto (the planner picks), bon, beam, dvts, "
             "majority or greedy")] = "auto",
    budget: Annotated[int, typer.Option("--budget", "--n", help="default budget N")] = 8,
    width: Annotated[int, typer.Option(help="default beam width M")] = 4,
    prm: Annotated[list[str] | None, typer.Option(
        "--prm", "--scorer",
        help="a scorer to load (repeat for more; the first is the default): self, arith, "
             "judge, FORMAT:PATH, http://HOST:PORT or none. Requests may also name the "
             "model-free ones without it")] = None,
    plan: Annotated[Path | None, typer.Option(
        help="plan file for method auto (default: the paper's prior rules)")] = None,
    max_tokens: Annotated[int, typer.Option(help="default tokens per solution")] = 512,
    max_step_tokens: Annotated[int, typer.Option(help="tokens per step")] = 256,
    max_depth: Annotated[int, typer.Option(help="steps per solution")] = 12,
    temperature: float = 0.7,
    max_running: Annotated[int, typer.Option(
        help="searches run at once (their engine calls share batches)")] = 4,
    max_waiting: Annotated[int, typer.Option(
        help="searches that may wait for a slot; past that, 429")] = 32,
    max_budget: Annotated[int, typer.Option(help="the largest budget a request may ask")] = 64,
    max_tokens_limit: Annotated[int, typer.Option(
        help="the largest max_tokens a request may ask")] = 4096,
    request_timeout: Annotated[float, typer.Option(
        help="seconds a request may take, waiting included; then 504")] = 600.0,
    max_body_bytes: Annotated[int, typer.Option(help="the largest request body")] = 2**20,
    engine: EngineOpt = "llama.cpp",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "auto",
    threads: ThreadsOpt = None,
    n_ctx: Annotated[int, typer.Option(help="llama.cpp context: the KV cache that every "
                                            "search shares")] = 16384,
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
    prm_format: PrmFormatOpt = "qwen-prm",
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = False,
    prompt: PromptOpt = "fewshot",
    chat_template: TemplateOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions) that answers
    each request with a test-time scaling search: point any OpenAI client at it."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        from ttscale.rewards import check_scorer_spec
        from ttscale.serve.app import ServerConfig, load_service
        from ttscale.serve.app import serve as run_server
        from ttscale.serve.requests import SERVED_METHODS, ServerDefaults, ServerLimits

        if method not in SERVED_METHODS:
            raise ValueError(f"unknown --method {method!r}; use one of "
                             f"{', '.join(SERVED_METHODS)}")
        specs = prm or ["confidence"]
        options = scorer_options(prm_device, prm_dtype, prm_format, trust_remote_code,
                                 prm_params)
        for spec in specs:
            check_scorer_spec(spec, options)
        config = ServerConfig(
            defaults=ServerDefaults(method=method, budget=budget, width=width, prm=specs[0],
                                    max_tokens=max_tokens, temperature=temperature),
            limits=ServerLimits(max_budget=max_budget, max_tokens=max_tokens_limit),
            max_step_tokens=max_step_tokens, max_depth=max_depth, max_running=max_running,
            max_waiting=max_waiting, request_timeout_s=request_timeout,
            max_body_bytes=max_body_bytes, api_key=api_key or None,
            served_model_name=served_model_name)
        if budget > max_budget or max_tokens > max_tokens_limit:
            raise ValueError("the default --budget and --max-tokens must be within "
                             "--max-budget and --max-tokens-limit")
        policy = load_engine(engine, model, base_url, params, n_ctx, threads, device=device,
                             dtype=dtype, trust_remote_code=trust_remote_code,
                             concurrency=max(64, max_running * budget))
        service = load_service(engine=policy, prm=specs, config=config, plan_path=plan,
                               prompt=prompt_format(prompt, chat_template, policy),
                               scorer_options=options)
        out.print(f"serving {service.model_name} on http://{host}:{port}/v1 "
                  f"(default: {method}, budget {budget}, scorer {specs[0]}; "
                  f"{'API key required' if config.api_key else 'no API key'})",
                  highlight=False)
        run_server(service, host=host, port=port, log_level=log_level.lower())
    except (TTScaleError, ValueError) as error:
        fail(str(error))
