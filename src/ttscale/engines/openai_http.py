"""A policy engine over any OpenAI-compatible ``POST /v1/completions`` endpoint.

Works with vLLM (``vllm serve``), SGLang, llama.cpp's ``llama-server``, llama-cpp-python's
server and Ollama: start the server on the GPU machine, then point ttscale at its base URL.

Each sample is its own request (``n=1``) with its own seed (:func:`sample_seed`), so sample
``j`` of a prefix does not depend on how many samples were asked for. Requests run
concurrently, at most ``concurrency`` in flight; requests for equal (or similar) prefixes are
issued next to each other so a server's prefix cache can serve them.

How server answers map to :class:`~ttscale.engines.base.Continuation` is told in
:mod:`ttscale.engines.openai_responses`.

``next_token_logprobs`` (LLM-as-judge) sends one greedy one-token request per prefix and reads
the ``top_logprobs`` of that token: a candidate is found by exact match of its text with a
token's text, so candidates should be single tokens (``" yes"``), and one outside the server's
top ``top_logprobs`` gets ``-inf``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI, OpenAI

from ttscale.engines import EngineSpec
from ttscale.engines.base import (
    Continuation,
    ModelInfo,
    NextTokenLogprobs,
    validate_extend_args,
)
from ttscale.engines.model_names import parameters_from_name
from ttscale.engines.openai_errors import listing_error, translate_error
from ttscale.engines.openai_responses import continuation_from_response, next_token_from_response
from ttscale.engines.sampling import sample_seed
from ttscale.errors import ConfigError, EngineError, ModelLoadError
from ttscale.http_client import (
    AttemptTimeoutError,
    RetryRule,
    extra_fields,
    one_line,
    resolve_api_key,
    with_retries,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


def check_server(base_url: str, api_key: str | None = None, timeout: float = 5) -> list[str]:
    """The model ids served at ``base_url``; raises a one-line :class:`ModelLoadError` fast
    when nothing answers there, so a run fails before it starts."""
    return [entry.id for entry in _list_models_sync(base_url, api_key, timeout)]


def _list_models_sync(base_url: str, api_key: str | None, timeout: float) -> list[Any]:
    client = OpenAI(
        base_url=base_url, api_key=resolve_api_key(api_key), timeout=timeout, max_retries=0
    )
    try:
        return _model_entries(client.models.list())
    except openai.APIError as exc:
        raise listing_error(exc, base_url) from exc
    finally:
        client.close()


def _model_entries(page: Any) -> list[Any]:
    return list(getattr(page, "data", None) or [])


def _choose_model(entries: list[Any], base_url: str) -> Any:
    """The first listed model (the one a server serving a single model serves)."""
    if not entries:
        raise ModelLoadError(
            f"the server at {base_url} lists no models at GET /models; "
            "load a model into it or pass --model NAME"
        )
    chosen = entries[0]
    if len(entries) > 1:
        logger.info(
            "server at %s serves %d models (%s); using the first, %s (pass --model to pick)",
            base_url,
            len(entries),
            ", ".join(str(e.id) for e in entries),
            chosen.id,
        )
    return chosen


def _reported_size(entry: Any) -> tuple[int | None, int | None]:
    """``(parameters, context_length)`` as a listing entry reports them: llama.cpp's
    ``meta.n_params``, vLLM's and SGLang's ``max_model_len``; ``None`` where it does not."""
    extra = extra_fields(entry)
    meta = extra.get("meta")
    n_params = meta.get("n_params") if isinstance(meta, dict) else None
    max_len = extra.get("max_model_len")
    return (n_params if isinstance(n_params, int) and n_params > 0 else None,
            max_len if isinstance(max_len, int) and max_len > 0 else None)


def _check_settings(base_url: str, concurrency: int, timeout: float, max_retries: int,
                    parameters: int | None, top_logprobs: int | None) -> None:
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, "
            f"got {base_url!r}"
        )
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    if timeout <= 0:
        raise ConfigError(f"timeout must be positive (seconds), got {timeout}")
    if max_retries < 0:
        raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
    if parameters is not None and parameters <= 0:
        raise ConfigError(f"parameters must be a positive count, got {parameters}")
    if top_logprobs is not None and top_logprobs < 1:
        raise ConfigError(f"top_logprobs must be at least 1, got {top_logprobs}")


class OpenAICompletionsEngine:
    """:class:`~ttscale.engines.base.Policy` over an OpenAI-compatible completions endpoint.

    ``model=None`` takes the (first) model the server lists at ``GET /v1/models``.
    ``parameters`` (for the FLOPs ledger) defaults to what the server reports (llama.cpp's
    ``meta.n_params``) or else to the size in the model name; ``context_length`` to the
    server's ``max_model_len`` (vLLM, SGLang) when it lists one.

    A request is retried ``max_retries`` times (``ttscale.http_client.with_retries``: refused
    or dropped connections, answers cut off, 408/409/429/5xx with the server's Retry-After),
    each attempt within ``timeout`` seconds as a whole; what still fails is raised as
    :class:`~ttscale.errors.RetryableEngineError` (or a more specific error) naming the server
    and the cause.

    ``extra_body`` is merged into every request, for server-specific sampling settings: e.g.
    ``{"repeat_penalty": 1.0}`` for llama-cpp-python's server, whose default repeat penalty of
    1.1 otherwise applies even at ``temperature == 0`` (so "greedy" is not the argmax there).

    ``top_logprobs`` is how many of the most likely next tokens ``next_token_logprobs`` asks
    for (vLLM allows 20 by default, OpenAI's own API 5)."""

    top_logprobs = 20

    # each sample is its own request, at most ``concurrency`` in flight: the server batches
    batches_across_calls = True

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        parameters: int | None = None,
        concurrency: int = EngineSpec.concurrency,
        timeout: float = EngineSpec.timeout,
        max_retries: int = 3,
        context_length: int | None = None,
        extra_body: dict[str, Any] | None = None,
        top_logprobs: int | None = None,
    ) -> None:
        _check_settings(base_url, concurrency, timeout, max_retries, parameters, top_logprobs)
        if top_logprobs is not None:
            self.top_logprobs = top_logprobs
        self.base_url = base_url.rstrip("/")
        self.api_key = resolve_api_key(api_key)
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.extra_body = dict(extra_body) if extra_body else None
        self._model = model
        self._parameters = parameters
        self._context_length = context_length
        self._resolved = False
        self._client_obj: AsyncOpenAI | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resolve_lock: asyncio.Lock | None = None
        if model is not None and parameters is None:
            self._parameters = parameters_from_name(model)

    # ------------------------------------------------------------------ model discovery

    @property
    def info(self) -> ModelInfo:
        if not self._resolved:
            if self._model is None:
                self._apply_listing(
                    _list_models_sync(self.base_url, self.api_key, min(self.timeout, 10))
                )
            else:
                self._finish_resolution()
        assert self._model is not None
        return ModelInfo(
            name=self._model,
            parameters=self._parameters,
            context_length=self._context_length,
            extra={"base_url": self.base_url, "backend": "openai-completions"},
        )

    @property
    def model(self) -> str | None:
        return self._model

    async def _resolve(self) -> None:
        if self._resolved:
            return
        assert self._resolve_lock is not None
        async with self._resolve_lock:
            if self._resolved:
                return
            if self._model is None:
                try:
                    page = await self._client().models.list()
                except openai.APIError as exc:
                    raise listing_error(exc, self.base_url) from exc
                self._apply_listing(_model_entries(page))
            else:
                self._finish_resolution()

    def _apply_listing(self, entries: list[Any]) -> None:
        chosen = _choose_model(entries, self.base_url)
        self._model = str(chosen.id)
        n_params, max_len = _reported_size(chosen)
        if self._parameters is None:
            self._parameters = n_params if n_params is not None else (
                parameters_from_name(self._model))
        if self._context_length is None and max_len is not None:
            self._context_length = max_len
        self._finish_resolution()

    def _finish_resolution(self) -> None:
        if self._parameters is None:
            logger.warning(
                "parameter count of model %r is unknown (not in its name, not reported by the "
                "server); FLOPs will not be estimated: pass parameters= / --parameters",
                self._model,
            )
        self._resolved = True

    # ------------------------------------------------------------------ client per event loop

    def _client(self) -> AsyncOpenAI:
        """The async client of the running event loop (an httpx pool cannot outlive its loop,
        so a new loop — e.g. a second ``asyncio.run`` — gets a new client)."""
        loop = asyncio.get_running_loop()
        if self._client_obj is None or self._loop is not loop:
            self._client_obj = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout,
                max_retries=0,  # ttscale's own retry rule, with a deadline per attempt
            )
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._resolve_lock = asyncio.Lock()
            self._loop = loop
        return self._client_obj

    async def close(self) -> None:
        client, loop = self._client_obj, self._loop
        self._client_obj = None
        self._loop = None
        if client is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - close() is a coroutine, a loop runs
            running = None
        if running is loop:
            await client.close()

    # ------------------------------------------------------------------ sampling

    async def extend(
        self,
        prefixes: Sequence[str],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        first_sample: int = 0,
    ) -> list[list[Continuation]]:
        validate_extend_args(prefixes, n, max_tokens, temperature, top_p, first_sample)
        if isinstance(stop, str):
            raise TypeError("stop must be a list of strings, not one string")
        stops = [s for s in (stop or ()) if s]
        self._client()
        await self._resolve()
        # Equal prefixes, and prefixes sharing a beginning, sort next to each other: their
        # requests go out together so a server's prefix cache sees them in turn.
        order = sorted(range(len(prefixes)), key=lambda i: prefixes[i])
        jobs = [(i, j) for i in order for j in range(n)]
        results = await asyncio.gather(*(
            self._one(prefixes[i], stops, max_tokens, temperature, top_p,
                      sample_seed(seed, first_sample + j, prefixes[i]))
            for i, j in jobs))
        out: list[list[Continuation | None]] = [[None] * n for _ in prefixes]
        for (i, j), continuation in zip(jobs, results, strict=True):
            out[i][j] = continuation
        return [[c for c in row if c is not None] for row in out]

    async def _one(
        self,
        prefix: str,
        stops: list[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
    ) -> Continuation:
        client = self._client()
        assert self._semaphore is not None and self._model is not None
        kwargs: dict[str, Any] = {"model": self._model, "prompt": prefix, "max_tokens": max_tokens,
                                  "temperature": temperature, "top_p": top_p, "n": 1,
                                  "seed": seed, "logprobs": 1}
        if stops:
            kwargs["stop"] = stops
        return self._read(continuation_from_response, await self._complete(client, kwargs),
                          stops)

    # ------------------------------------------------------------------ next-token scoring

    async def next_token_logprobs(
        self, prefixes: Sequence[str], candidates: Sequence[str]
    ) -> list[NextTokenLogprobs]:
        """One greedy one-token request per prefix; see the module doc for the read-out."""
        if isinstance(prefixes, str) or isinstance(candidates, str):
            raise TypeError("prefixes and candidates must be lists of strings, not one string")
        if not prefixes:
            return []
        self._client()
        await self._resolve()
        # as in extend: neighbouring prefixes go out together, for the server's prefix cache
        order = sorted(range(len(prefixes)), key=lambda i: prefixes[i])
        answers = await asyncio.gather(
            *(self._next_token(prefixes[i], candidates) for i in order)
        )
        out: list[NextTokenLogprobs | None] = [None] * len(prefixes)
        for i, answer in zip(order, answers, strict=True):
            out[i] = answer
        return [a for a in out if a is not None]

    async def _next_token(self, prefix: str, candidates: Sequence[str]) -> NextTokenLogprobs:
        client = self._client()
        assert self._semaphore is not None and self._model is not None
        kwargs: dict[str, Any] = {"model": self._model, "prompt": prefix, "max_tokens": 1,
                                  "temperature": 0.0, "n": 1, "logprobs": self.top_logprobs}
        return self._read(next_token_from_response, await self._complete(client, kwargs),
                          candidates)

    def _read(self, read: Callable[..., T], response: Any, *args: Any) -> T:
        """``read(response, *args)``, its complaints about the answer (no choices, log-probs
        that are none, a field of the wrong type) naming the server that gave it."""
        try:
            return read(response, *args)
        except (EngineError, ValueError, TypeError, AttributeError) as exc:
            raise EngineError(f"{self.base_url} (model {self._model}) gave an answer that "
                              f"cannot be used: {one_line(exc)}") from exc

    async def _complete(self, client: AsyncOpenAI, kwargs: dict[str, Any]) -> Any:
        """One /v1/completions request within the concurrency limit, errors translated."""
        assert self._semaphore is not None
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        async with self._semaphore:
            return await self._with_retries(lambda: client.completions.create(**kwargs))

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt`` under the retry rule, what still fails translated to one line."""
        try:
            return await with_retries(attempt, RetryRule(self.max_retries, self.timeout))
        except (openai.APIError, AttemptTimeoutError, json.JSONDecodeError) as exc:
            raise translate_error(exc, self.base_url, self._model, self.max_retries) from exc

