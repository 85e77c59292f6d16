"""A policy engine over any OpenAI-compatible ``POST /v1/completions`` endpoint.

Works with vLLM (``vllm serve``), SGLang, llama.cpp's ``llama-server``, llama-cpp-python's
server and Ollama: start the server on the GPU machine, then point ttscale at its base URL.

Each sample is its own request (``n=1``) with its own seed, so sample ``j`` of a prefix does not
depend on how many samples were asked for. Requests run concurrently, at most ``concurrency``
in flight; requests for equal (or similar) prefixes are issued next to each other so a server's
prefix cache can serve them.

How server answers map to :class:`~ttscale.engines.base.Continuation`:

* ``finish_reason``: most servers report ``"stop"`` both for the end-of-sequence token and for
  a stop string, so the two are told apart as follows, first match wins:

  1. A server that left a stop string in the text: the text is cut before the first one ->
     ``"stop"``.
  2. ``"length"`` stays ``"length"``.
  3. vLLM (and SGLang) add ``stop_reason``: a string is the stop string that was hit; ``None``
     or an integer (a stop token id) means end of sequence -> ``"eos"``.
  4. No stop strings were requested -> ``"eos"``.
  5. The per-token log-prob listing (always requested): if the generated tokens run past the
     returned text and that overhang starts with a stop string, the server cut the text at that
     stop string -> ``"stop"``; otherwise -> ``"eos"``. (llama-cpp-python's server lists a
     stop string's tokens but no end-of-sequence token.)
  6. Nothing tells: ``"stop"`` with ``stop_string=None`` (the server stopped of its own accord;
     which way is unknown).

* ``prompt_tokens`` / ``generated_tokens`` come from ``usage``. ``cached_prompt_tokens`` comes
  from ``usage.prompt_tokens_details.cached_tokens`` when the server reports it, else 0: a
  server that does not say may still have cached, but we do not claim savings we cannot see.
* ``token_logprobs`` come from ``choices[0].logprobs.token_logprobs`` (``None`` entries, e.g. for
  a first token some servers do not score, are skipped); ``None`` when the server gives none.
  ``token_offsets`` come from ``text_offset``, shifted to start at 0 (llama-cpp-python counts
  from the start of the prompt) and capped at ``len(text)`` (a stop string's tokens lie past
  the text). Whether log-probs are tempered depends on the server: vLLM and llama.cpp report
  the model's raw distribution by default.

``next_token_logprobs`` (LLM-as-judge) sends one greedy one-token request per prefix and reads
the ``top_logprobs`` of that token: a candidate is found by exact match of its text with a
token's text, so candidates should be single tokens (``" yes"``), and one outside the server's
top ``top_logprobs`` gets ``-inf``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import openai
from openai import AsyncOpenAI, OpenAI

from ttscale.engines.base import (
    Continuation,
    FinishReason,
    ModelInfo,
    NextTokenLogprobs,
    validate_extend_args,
)
from ttscale.errors import (
    ConfigError,
    ContextLengthError,
    EngineError,
    ModelLoadError,
    RetryableEngineError,
)

logger = logging.getLogger(__name__)

API_KEY_ENV_VARS = ("TTSCALE_API_KEY", "OPENAI_API_KEY")
DEFAULT_API_KEY = "EMPTY"

# Seeds are kept below 2**31: some servers store them in a signed 32-bit int.
_SEED_MODULUS = 2**31 - 1

CONTEXT_PATTERN = re.compile(
    r"context[ _-]?(length|window|size)|max_model_len|maximum (context|sequence) length"
    r"|too many tokens|prompt is too long|exceed_context|context_length_exceeded",
    re.IGNORECASE,
)

_UNIT_SCALE = {"m": 10**6, "b": 10**9, "t": 10**12}
# A size such as "7B", "1.5b", "135M": not glued to a preceding letter, digit or dot (so the "5"
# of "Qwen2.5" or the "7B" inside "1.7B" never match alone) and not followed by a letter/digit.
_SIZE_PATTERN = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)([bBmMtT])(?![A-Za-z0-9])")
# Mixture-of-experts names ("Mixtral-8x7B", "Qwen3-30B-A3B"): the size in the name is not the
# parameter count that a FLOPs estimate needs, so none is guessed.
_MOE_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])\d+x\d+(?:\.\d+)?[bBmM](?![A-Za-z0-9])|(?<![A-Za-z0-9])[aA]\d+(?:\.\d+)?[bB]"
    r"(?![A-Za-z0-9])"
)


def parameters_from_name(name: str) -> int | None:
    """The parameter count stated in a model name, or ``None``.

    ``"Qwen2.5-Math-7B-Instruct"`` -> 7e9, ``"Qwen/Qwen2.5-Math-1.5B-Instruct"`` -> 1.5e9,
    ``"SmolLM2-135M-Instruct"`` -> 135e6, ``"llama3.1:70b"`` -> 70e9. A billions-sized match wins
    over a millions-sized one (``"Qwen2.5-7B-Instruct-1M"`` is 7B; the "1M" is its context).
    Mixture-of-experts names give ``None``."""
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if _MOE_PATTERN.search(base):
        return None
    matches = [(float(num), unit.lower()) for num, unit in _SIZE_PATTERN.findall(base)]
    for wanted in ("t", "b", "m"):
        for num, unit in matches:
            if unit == wanted and num > 0:
                return int(round(num * _UNIT_SCALE[unit]))
    return None


def sample_seed(seed: int, j: int, prefix: str = "") -> int:
    """The server-side seed of sample ``j`` of ``prefix`` in a call made with ``seed``.

    Depends on ``(seed, prefix, j)`` only, so the first ``k`` samples of a call with ``n > k``
    are those of a call with ``n = k``. The prefix is mixed in so that the beams of one search
    round do not all draw the same random numbers; hashed rather than ``seed + j`` so that calls
    with neighbouring seeds do not share samples."""
    digest = hashlib.sha256(f"ttscale-sample:{seed}:{j}:".encode() + prefix.encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_MODULUS


def resolve_api_key(api_key: str | None) -> str:
    if api_key:
        return api_key
    for var in API_KEY_ENV_VARS:
        value = os.environ.get(var)
        if value:
            return value
    return DEFAULT_API_KEY


def _unreachable_message(base_url: str, reason: object, model: str | None = None) -> str:
    hint = f"vllm serve {model}" if model else "vllm serve MODEL"
    return (
        f"cannot reach the OpenAI-compatible server at {base_url}: {one_line(reason)}; "
        f"start it (e.g. `{hint}`) or check --base-url"
    )


def one_line(reason: object) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= 300 else text[:297] + "..."


def root_cause(exc: BaseException) -> BaseException:
    """The most telling cause of a client error: the deepest OS error in its chain (e.g.
    ``ConnectionRefusedError``), else the last explicit cause."""
    deepest_os: BaseException | None = None
    last = exc
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            deepest_os = current
        if current.__cause__ is not None:
            last = current.__cause__
        current = current.__cause__ or current.__context__
    return deepest_os or last


def status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return one_line(inner["message"])
        if isinstance(inner, str):
            return one_line(inner)
        if body.get("message"):
            return one_line(body["message"])
        if body.get("detail"):
            return one_line(body["detail"])
    return one_line(exc.message)


def translate_error(exc: Exception, base_url: str, model: str | None) -> Exception:
    """Map an ``openai`` client exception (raised after its own retries) to a ttscale error."""
    if isinstance(exc, openai.APIConnectionError) and is_connect_failure(exc):
        # Could not open a connection at all (refused, unknown host, connect timeout): the
        # server is not there, and retrying inside a search will not bring it back.
        cause = root_cause(exc)
        text = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        return ModelLoadError(_unreachable_message(base_url, text, model))
    if isinstance(exc, openai.APITimeoutError):
        return RetryableEngineError(
            f"request to {base_url} timed out (after retries); the server may be overloaded: "
            "lower --concurrency or raise the timeout"
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = root_cause(exc)
        text = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        return RetryableEngineError(
            f"connection to {base_url} failed mid-request (after retries): {one_line(text)}"
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = status_message(exc)
        code = exc.code if isinstance(exc.code, str) else ""
        if status in (401, 403):
            return EngineError(
                f"the server at {base_url} rejected the API key (HTTP {status}: {message}); "
                f"set {API_KEY_ENV_VARS[0]} (or {API_KEY_ENV_VARS[1]}) or pass --api-key"
            )
        if CONTEXT_PATTERN.search(message) or CONTEXT_PATTERN.search(code):
            return ContextLengthError(
                f"prompt plus max_tokens does not fit the context window of the model at "
                f"{base_url} (HTTP {status}: {message}); shorten the prompt, lower max_tokens "
                "or serve the model with a longer context"
            )
        if status == 404:
            return ModelLoadError(
                f"HTTP 404 from {base_url} for model {model!r}: {message}; check --base-url "
                "(it usually ends in /v1) and --model (see the server's GET /v1/models)"
            )
        if status in (408, 409, 429) or status >= 500:
            return RetryableEngineError(
                f"the server at {base_url} kept failing (HTTP {status}, after retries): {message}"
            )
        return EngineError(
            f"the server at {base_url} refused the request (HTTP {status}): {message}"
        )
    if isinstance(exc, openai.APIError):
        return EngineError(f"bad answer from the server at {base_url}: {one_line(exc)}")
    return exc


def is_connect_failure(exc: BaseException) -> bool:
    """True when no connection could be opened (as opposed to one that broke mid-request).

    Judged from the chain of causes: the HTTP library's ``ConnectError`` (httpx or httpx2,
    depending on the ``openai`` version) or the OS error beneath it."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError | socket.gaierror):
            return True
        if type(current).__name__ in ("ConnectError", "ConnectTimeout"):
            return True
        current = current.__cause__ or current.__context__
    return False


def _model_entries(page: Any) -> list[Any]:
    return list(getattr(page, "data", None) or [])


def _extra(obj: Any) -> dict[str, Any]:
    extra = getattr(obj, "model_extra", None)
    return dict(extra) if isinstance(extra, dict) else {}


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
        raise _listing_error(exc, base_url) from exc
    finally:
        client.close()


def _listing_error(exc: Exception, base_url: str) -> Exception:
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        cause = root_cause(exc)
        text = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        if isinstance(exc, openai.APITimeoutError):
            text = "no answer to GET /models in time"
        return ModelLoadError(_unreachable_message(base_url, text))
    if isinstance(exc, openai.APIStatusError) and exc.status_code == 404:
        return ModelLoadError(
            f"{base_url} answered GET /models with HTTP 404; check --base-url "
            "(for an OpenAI-compatible server it usually ends in /v1)"
        )
    return translate_error(exc, base_url, None)


class OpenAICompletionsEngine:
    """:class:`~ttscale.engines.base.Policy` over an OpenAI-compatible completions endpoint.

    ``model=None`` takes the (first) model the server lists at ``GET /v1/models``.
    ``parameters`` (for the FLOPs ledger) defaults to what the server reports (llama.cpp's
    ``meta.n_params``) or else to the size in the model name; ``context_length`` to the
    server's ``max_model_len`` (vLLM, SGLang) when it lists one.

    The ``openai`` client retries 408/409/429/5xx answers and dropped connections up to
    ``max_retries`` times with backoff; what still fails is raised as
    :class:`~ttscale.errors.RetryableEngineError` (or a more specific error).

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
        concurrency: int = 64,
        timeout: float = 600,
        max_retries: int = 3,
        context_length: int | None = None,
        extra_body: dict[str, Any] | None = None,
        top_logprobs: int | None = None,
    ) -> None:
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
        if top_logprobs is not None:
            if top_logprobs < 1:
                raise ConfigError(f"top_logprobs must be at least 1, got {top_logprobs}")
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
                    raise _listing_error(exc, self.base_url) from exc
                self._apply_listing(_model_entries(page))
            else:
                self._finish_resolution()

    def _apply_listing(self, entries: list[Any]) -> None:
        if not entries:
            raise ModelLoadError(
                f"the server at {self.base_url} lists no models at GET /models; "
                "load a model into it or pass --model NAME"
            )
        chosen = entries[0]
        if len(entries) > 1:
            logger.info(
                "server at %s serves %d models (%s); using the first, %s (pass --model to pick)",
                self.base_url,
                len(entries),
                ", ".join(str(e.id) for e in entries),
                chosen.id,
            )
        self._model = str(chosen.id)
        extra = _extra(chosen)
        if self._parameters is None:
            meta = extra.get("meta")
            n_params = meta.get("n_params") if isinstance(meta, dict) else None
            if isinstance(n_params, int) and n_params > 0:
                self._parameters = n_params
            else:
                self._parameters = parameters_from_name(self._model)
        if self._context_length is None:
            max_len = extra.get("max_model_len")
            if isinstance(max_len, int) and max_len > 0:
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
                max_retries=self.max_retries,
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
        results = await asyncio.gather(
            *(
                self._one(prefixes[i], stops, max_tokens, temperature, top_p,
                          sample_seed(seed, first_sample + j, prefixes[i]))
                for i, j in jobs
            )
        )
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
        kwargs: dict[str, Any] = {
            "model": self._model,
            "prompt": prefix,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "n": 1,
            "seed": seed,
            "logprobs": 1,
        }
        if stops:
            kwargs["stop"] = stops
        return continuation_from_response(await self._complete(client, kwargs), stops)

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
        kwargs: dict[str, Any] = {
            "model": self._model,
            "prompt": prefix,
            "max_tokens": 1,
            "temperature": 0.0,
            "n": 1,
            "logprobs": self.top_logprobs,
        }
        return next_token_from_response(await self._complete(client, kwargs), candidates)

    async def _complete(self, client: AsyncOpenAI, kwargs: dict[str, Any]) -> Any:
        """One /v1/completions request within the concurrency limit, errors translated."""
        assert self._semaphore is not None
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        async with self._semaphore:
            try:
                return await client.completions.create(**kwargs)
            except openai.APIError as exc:
                raise translate_error(exc, self.base_url, self._model) from exc


def next_token_from_response(response: Any, candidates: Sequence[str]) -> NextTokenLogprobs:
    """Read the candidates' log-probs off the first generated token's ``top_logprobs``."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise EngineError("the server answered a completions request with no choices")
    listing = getattr(choices[0], "logprobs", None)
    tops = getattr(listing, "top_logprobs", None) if listing is not None else None
    if not tops or tops[0] is None:
        raise EngineError("the server gave no top_logprobs for the next token; it must support "
                          "the completions API's logprobs option to score candidates")
    top = {str(token): float(value) for token, value in dict(tops[0]).items()}
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return NextTokenLogprobs(
        logprobs={c: top.get(c, -math.inf) for c in candidates},
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=max(0, min(cached, prompt_tokens)),
    )


def continuation_from_response(response: Any, stops: Sequence[str]) -> Continuation:
    """Turn one ``n=1`` completions response into a :class:`Continuation` (see module doc)."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise EngineError("the server answered a completions request with no choices")
    choice = choices[0]
    text = choice.text or ""
    raw_reason = choice.finish_reason
    extra = _extra(choice)

    tokens, token_logprobs, offsets = _logprob_listing(getattr(choice, "logprobs", None))

    finish_reason: FinishReason
    stop_string: str | None = None
    cut = _first_stop(text, stops)
    if cut is not None:
        # The server left a stop string in the text: cut before it.
        position, stop_string = cut
        text = text[:position]
        finish_reason = "stop"
    elif raw_reason == "length":
        finish_reason = "length"
    elif "stop_reason" in extra:
        reason = extra["stop_reason"]
        if isinstance(reason, str):
            finish_reason, stop_string = "stop", reason
        else:
            finish_reason = "eos"
    elif not stops:
        finish_reason = "eos"
    elif tokens is not None:
        hit = _stop_in_overhang(text, tokens, stops)
        if hit is not None:
            finish_reason, stop_string = "stop", hit
        else:
            finish_reason = "eos"
    else:
        finish_reason = "stop"

    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    if usage is not None and getattr(usage, "completion_tokens", None) is not None:
        generated_tokens = int(usage.completion_tokens)
    else:
        generated_tokens = len(token_logprobs) if token_logprobs is not None else 0
    cached = 0
    details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
    if details is not None:
        cached = int(getattr(details, "cached_tokens", 0) or 0)
    cached = max(0, min(cached, prompt_tokens))

    return Continuation(
        text=text,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached,
        generated_tokens=generated_tokens,
        token_logprobs=token_logprobs,
        token_offsets=None if offsets is None else tuple(min(o, len(text)) for o in offsets),
        stop_string=stop_string,
    )


def _logprob_listing(
    logprobs: Any,
) -> tuple[list[str] | None, tuple[float, ...] | None, tuple[int, ...] | None]:
    """``(tokens, token_logprobs, token_offsets)`` of a choice's legacy ``logprobs`` object.

    Entries whose log-prob is ``None`` are dropped from all three alike. Offsets are made
    relative to the continuation's first character: servers differ on whether ``text_offset``
    counts the prompt (llama-cpp-python does), and the first generated token starts the text
    in either case. Without ``text_offset``, offsets are running sums of the tokens' lengths."""
    if logprobs is None:
        return None, None, None
    raw_tokens = getattr(logprobs, "tokens", None)
    raw_logprobs = getattr(logprobs, "token_logprobs", None)
    raw_offsets = getattr(logprobs, "text_offset", None)
    tokens = [t or "" for t in raw_tokens] if raw_tokens is not None else None
    if raw_logprobs is None:
        return tokens, None, None
    count = len(raw_logprobs)
    if raw_offsets is not None and len(raw_offsets) == count and count:
        first = raw_offsets[0]
        all_offsets: list[int] | None = [max(0, int(o) - first) for o in raw_offsets]
    elif tokens is not None and len(tokens) == count:
        all_offsets, position = [], 0
        for token in tokens:
            all_offsets.append(position)
            position += len(token)
    else:
        all_offsets = None
    keep = [k for k, value in enumerate(raw_logprobs) if value is not None]
    values = tuple(float(raw_logprobs[k]) for k in keep)
    offsets = None if all_offsets is None else tuple(all_offsets[k] for k in keep)
    return tokens, values, offsets


def _first_stop(text: str, stops: Iterable[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for s in stops:
        position = text.find(s)
        if position >= 0 and (best is None or position < best[0]):
            best = (position, s)
    return best


def _stop_in_overhang(text: str, tokens: Sequence[str], stops: Sequence[str]) -> str | None:
    """The stop string the server cut the text at, read from the generated tokens' text.

    A server that stops on a stop string has generated the tokens holding it, and lists them,
    but returns the text only up to it. ``None`` when the tokens add nothing past the text
    (or add something that is no stop string, such as an end-of-sequence marker)."""
    # Tokens that do not detokenize piecewise (a character split across tokens) may not start
    # with the text exactly; the overhang is still what lies past the text's length.
    overhang = "".join(tokens)[len(text) :]
    hits = [s for s in stops if overhang and overhang.startswith(s)]
    return max(hits, key=len) if hits else None
