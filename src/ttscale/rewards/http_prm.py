"""A PRM behind a server's pooling API: vLLM (``--task reward``) or ``ttscale prm serve``.

The input text of each solution is built here, with the format's own function
(``qwen_prm.prm_input``: the chat rendered as Qwen2.5's template writes it;
``math_shepherd.prm_input``), and sent to ``POST {root}/pooling`` as
``{"model": ..., "input": [texts]}``. The server tokenizes it and, with STEP pooling, answers
one vector per step-tag token: the two label probabilities in the order the server was told.
The positive label's probability is the step's score.

Start the servers as, e.g.::

    vllm serve Qwen/Qwen2.5-Math-PRM-7B --task reward
    vllm serve peiyi9979/math-shepherd-mistral-7b-prm --task reward \\
        --override-pooler-config '{"pooling_type": "STEP", "step_tag_id": 12902,
                                   "returned_token_ids": [648, 387]}'

(newer vLLM spells these ``--runner pooling`` and ``--pooler-config``). vLLM serves
``/pooling`` at the root, not under ``/v1``; a base URL is taken either way."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI, OpenAI

from ttscale.compute import TokenCount
from ttscale.errors import (
    ConfigError,
    ContextLengthError,
    EngineError,
    ModelLoadError,
    RetryableEngineError,
)
from ttscale.http_client import (
    CONTEXT_PATTERN,
    AttemptTimeoutError,
    RetryRule,
    after_retries,
    cause_text,
    is_connect_failure,
    one_line,
    resolve_api_key,
    status_message,
    with_retries,
)
from ttscale.rewards import math_shepherd, qwen_prm
from ttscale.rewards.base import ScoreBatch, check_scores
from ttscale.steps import Step

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WireFormat:
    """How a format travels: its input text, where its positive label sits in each returned
    vector, and how to start vLLM for it (for error messages). The formats here are the
    ones ``ttscale prm serve`` serves too (their scores are read at a step tag)."""

    text: Callable[[str, Sequence[str]], str]
    positive: int
    serve: str


FORMATS: dict[str, WireFormat] = {
    "qwen-prm": WireFormat(qwen_prm.prm_input, qwen_prm.POSITIVE_LABEL,
                           "vllm serve Qwen/Qwen2.5-Math-PRM-7B --task reward"),
    "math-shepherd": WireFormat(
        math_shepherd.prm_input, math_shepherd.POSITIVE_LABEL,
        "vllm serve peiyi9979/math-shepherd-mistral-7b-prm --task reward "
        "--override-pooler-config '{\"pooling_type\": \"STEP\", \"step_tag_id\": 12902, "
        "\"returned_token_ids\": [648, 387]}'"),
}


def server_root(base_url: str) -> str:
    """The server's root URL: ``/pooling`` lives there and ``/v1/models`` under it."""
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"the PRM server URL must be http(s), such as http://127.0.0.1:8001, "
                          f"got {base_url!r}")
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


class HTTPProcessRewardModel:
    """:class:`~ttscale.rewards.base.Scorer` over a pooling endpoint.

    All solutions of one ``score`` call go out in requests of up to ``batch_size`` inputs, at
    most ``concurrency`` in flight. A request is retried ``max_retries`` times under the retry
    rule of ``ttscale.http_client`` (timeouts, refused or dropped connections, answers cut off,
    408/409/429/5xx), each attempt within ``timeout`` seconds as a whole; what still fails is
    raised as one line naming the server. ``model=None`` takes the first model of
    ``GET /v1/models``."""

    pointwise = True

    def __init__(self, base_url: str, format: str = "qwen-prm", model: str | None = None,
                 api_key: str | None = None, timeout: float = 120, concurrency: int = 16,
                 max_retries: int = 3, parameters: int | None = None,
                 batch_size: int = 32) -> None:
        if format not in FORMATS:
            raise ConfigError(f"unknown PRM format {format!r} for a PRM server; use "
                              f"{' or '.join(FORMATS)}")
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive (seconds), got {timeout}")
        if concurrency < 1 or batch_size < 1:
            raise ConfigError(f"concurrency and batch_size must be at least 1, got "
                              f"{concurrency} and {batch_size}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if parameters is not None and parameters <= 0:
            raise ConfigError(f"parameters must be a positive count, got {parameters}")
        self.root = server_root(base_url)
        self.format = format
        self.wire = FORMATS[format]
        self.api_key = resolve_api_key(api_key)
        self.timeout = timeout
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.batch_size = batch_size
        self._model = model
        self._parameters = parameters
        address = urlsplit(self.root).netloc.rpartition("@")[2]
        self.name = f"http:{format}@{address}"
        self._client_obj: AsyncOpenAI | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._model_lock: asyncio.Lock | None = None

    @property
    def parameters(self) -> int | None:
        return self._parameters

    @property
    def model(self) -> str | None:
        return self._model

    # -- before a run ------------------------------------------------------------------------
    def check(self) -> str:
        """Fail fast, in one line, when the server is down, serves no such model or does not
        answer one vector per step; returns the model name."""
        timeout = min(self.timeout, 10)
        client = OpenAI(base_url=self.root, api_key=self.api_key, timeout=timeout,
                        max_retries=0)
        try:
            listing = client.get("v1/models", cast_to=object)
            self._model = self._pick_model(listing)
            probe = self.wire.text("1 + 1 = ?", ["1 + 1 = 2.", "The answer is 2."])
            answer = client.post("pooling", body=self._body([probe]), cast_to=object)
        except openai.APIError as exc:
            raise self._error(exc, timeout=timeout, retries=0) from exc
        except ValueError as exc:  # a JSON content type over a body that is not JSON
            raise self._bad_answer(f"the body is not JSON ({exc})") from exc
        finally:
            client.close()
        self._read(answer, [2])
        return self._model

    def _pick_model(self, listing: Any) -> str:
        entries = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(entries, list):
            raise self._bad_answer("GET /v1/models gave no model list")
        ids = [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]
        if self._model is None:
            if not ids:
                raise ModelLoadError(f"the PRM server at {self.root} lists no models at "
                                     "GET /v1/models")
            return ids[0]
        if self._model not in ids:
            raise ModelLoadError(f"the PRM server at {self.root} does not serve model "
                                 f"{self._model!r}; it serves {', '.join(ids) or 'none'}")
        return self._model

    # -- scoring -----------------------------------------------------------------------------
    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        # a solution without steps has nothing to read: it is not sent
        sent = [i for i, steps in enumerate(solutions) if steps]
        chunks = [sent[k:k + self.batch_size] for k in range(0, len(sent), self.batch_size)]
        answers = await asyncio.gather(*(
            self._pool([self.wire.text(problem, [s.text for s in solutions[i]]) for i in chunk],
                       [len(solutions[i]) for i in chunk])
            for chunk in chunks))
        scores: list[list[float]] = [[] for _ in solutions]
        prompt_tokens = 0
        for chunk, (chunk_scores, tokens) in zip(chunks, answers, strict=True):
            prompt_tokens += tokens
            for i, values in zip(chunk, chunk_scores, strict=True):
                scores[i] = values
        return check_scores(ScoreBatch(scores, TokenCount(prompt=prompt_tokens)), solutions,
                            self.name)

    async def _pool(self, texts: list[str], step_counts: list[int]
                    ) -> tuple[list[list[float]], int]:
        client = self._client()
        await self._resolve_model()
        assert self._semaphore is not None
        async with self._semaphore:
            answer = await self._with_retries(
                lambda: client.post("pooling", body=self._body(texts), cast_to=object))
        return self._read(answer, step_counts)

    async def _with_retries(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``attempt`` under the retry rule (as the policy engine's), what still fails
        translated to one line naming the server."""
        try:
            return await with_retries(attempt, RetryRule(self.max_retries, self.timeout))
        except (openai.APIError, AttemptTimeoutError) as exc:
            raise self._error(exc) from exc
        except ValueError as exc:  # JSONDecodeError, from a body cut off or not JSON
            raise self._bad_answer(f"the body is not JSON ({exc}; "
                                   f"{after_retries(self.max_retries)})") from exc

    def _body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self._model, "input": texts}

    async def _resolve_model(self) -> None:
        if self._model is not None:
            return
        assert self._model_lock is not None
        async with self._model_lock:
            if self._model is None:
                client = self._client()
                listing = await self._with_retries(
                    lambda: client.get("v1/models", cast_to=object))
                self._model = self._pick_model(listing)

    # -- reading answers ---------------------------------------------------------------------
    def _read(self, answer: Any, step_counts: list[int]) -> tuple[list[list[float]], int]:
        """Scores per input and prompt tokens of one pooling answer, or a one-line error
        that says what was wrong with it."""
        if not isinstance(answer, dict):
            kind = "text" if isinstance(answer, str) else type(answer).__name__
            raise self._bad_answer(f"expected a JSON object, got {kind}: {one_line(answer)}")
        data, usage = answer.get("data"), answer.get("usage")
        if not isinstance(data, list) or len(data) != len(step_counts):
            got = f"{len(data)} items" if isinstance(data, list) else repr(data)[:80]
            raise self._bad_answer(f"expected 'data' with {len(step_counts)} items, got {got}")
        prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(prompt_tokens, int) or prompt_tokens < 0:
            raise self._bad_answer("no usage.prompt_tokens in the answer")
        by_index = {item.get("index"): item for item in data if isinstance(item, dict)}
        if set(by_index) != set(range(len(data))):
            raise self._bad_answer(f"the 'data' items do not carry the indices 0 to "
                                   f"{len(data) - 1}")
        scores = [self._step_scores(by_index[k].get("data"), steps, k)
                  for k, steps in enumerate(step_counts)]
        return scores, prompt_tokens

    def _step_scores(self, vectors: Any, steps: int, position: int) -> list[float]:
        if not isinstance(vectors, list) or not all(
                isinstance(v, list) and all(_is_number(x) for x in v) for v in vectors):
            raise self._bad_answer(
                f"input {position}: expected a list of vectors (STEP pooling), got "
                f"{one_line(repr(vectors)[:120])}; start the server with STEP pooling: "
                f"`{self.wire.serve}`")
        widths = {len(v) for v in vectors}
        if widths - {2}:
            raise self._bad_answer(
                f"input {position}: vectors of {max(widths - {2})} values where 2 label "
                "probabilities were expected (per-token output, not STEP-pooled); start the "
                f"server with STEP pooling on the format's tag: `{self.wire.serve}`")
        if len(vectors) != steps:
            raise EngineError(
                f"the PRM server at {self.root} returned {len(vectors)} step vectors for a "
                f"solution of {steps} steps: it must pool exactly at the {self.format} step "
                f"tags (STEP pooling, that format's step_tag_id); e.g. `{self.wire.serve}`")
        values = [float(v[self.wire.positive]) for v in vectors]
        for step, value in enumerate(values):
            if not math.isfinite(value):
                raise EngineError(
                    f"the PRM server at {self.root} returned step score {value} for step "
                    f"{step} of input {position}: not a number; its model gave NaN or an "
                    "infinity (check the PRM's weights and dtype)")
            if not 0.0 <= value <= 1.0:
                raise EngineError(
                    f"the PRM server at {self.root} returned step score {value} outside [0, 1]: "
                    "it gives raw logits rather than probabilities; serve the PRM with its "
                    f"softmax (e.g. `{self.wire.serve}`)")
        return values

    def _bad_answer(self, what: str) -> EngineError:
        return EngineError(f"malformed pooling answer from the PRM server at {self.root}: "
                           f"{what}")

    def _error(self, exc: openai.APIError, timeout: float | None = None,
               retries: int | None = None) -> Exception:
        """One line per failure, from the client's exception (raised after its retries)."""
        where = f"the PRM server at {self.root}"
        after = after_retries(self.max_retries if retries is None else retries)
        if isinstance(exc, openai.APIConnectionError) and is_connect_failure(exc):
            return ModelLoadError(f"cannot reach {where}: {one_line(cause_text(exc))}; start "
                                  f"it (e.g. `{self.wire.serve}` or `ttscale prm serve`) or "
                                  "check the URL given to --prm")
        if isinstance(exc, openai.APITimeoutError | AttemptTimeoutError):
            return RetryableEngineError(
                f"{where} did not answer within {timeout or self.timeout:g}s ({after}); "
                "it may be "
                "overloaded or stuck: raise the timeout or lower the concurrency")
        if isinstance(exc, openai.APIConnectionError):
            return RetryableEngineError(f"connection to {where} failed mid-request ({after}): "
                                        f"{one_line(cause_text(exc))}")
        if isinstance(exc, openai.APIStatusError):
            status, message = exc.status_code, status_message(exc)
            if status in (401, 403):
                return EngineError(f"{where} rejected the API key (HTTP {status}: {message}); "
                                   "pass the server's key")
            if CONTEXT_PATTERN.search(message):
                return ContextLengthError(f"a PRM input does not fit the context of the model "
                                          f"at {self.root} (HTTP {status}: {message})")
            if status == 404:
                return ModelLoadError(
                    f"HTTP 404 from {where}: {message}; it must serve the pooling API "
                    f"(POST {self.root}/pooling, GET /v1/models; vLLM: `{self.wire.serve}`)"
                    + (f" and the model {self._model!r}" if self._model else ""))
            if status in (408, 409, 429) or status >= 500:
                return RetryableEngineError(f"{where} kept failing (HTTP {status}, "
                                            f"{after}): {message}")
            return EngineError(f"{where} refused the request (HTTP {status}): {message}")
        return self._bad_answer(one_line(exc))

    # -- client per event loop ---------------------------------------------------------------
    def _client(self) -> AsyncOpenAI:
        """The async client of the running loop (an HTTP pool cannot outlive its loop)."""
        loop = asyncio.get_running_loop()
        if self._client_obj is None or self._loop is not loop:
            self._client_obj = AsyncOpenAI(base_url=self.root, api_key=self.api_key,
                                           timeout=self.timeout, max_retries=0)
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._model_lock = asyncio.Lock()
            self._loop = loop
        return self._client_obj

    async def close(self) -> None:
        client, loop = self._client_obj, self._loop
        self._client_obj, self._loop = None, None
        if client is not None and loop is asyncio.get_running_loop():
            await client.close()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

