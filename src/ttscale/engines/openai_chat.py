"""A policy engine over an OpenAI-compatible ``POST /v1/chat/completions`` endpoint, for servers
that apply the model's chat template and reasoning parser themselves (vLLM and SGLang with
``--reasoning-parser``, hosted APIs) or that offer no completions endpoint.

It takes the prompt as chat messages (``--prompt messages``: the system prompt and the
problem, sent unrendered) and answers whole solutions. A reasoning parser's thought
(``message.reasoning_content``, or ``message.reasoning`` in newer vLLM) comes back between
``<think>`` markers ahead of the content, so that ttscale reads it as it reads a thought written
in the text: the answer from the content only, the thought as thought steps. A null content
beside a thought is the parsers' way of saying the thought never closed: it stays open (no
answer).

Limits: a step-wise search continues a partial solution, which a chat endpoint cannot do
portably, so this engine refuses it (use the completions engine, ``--engine openai``, for beam
search, DVTS and the like); chat answers carry no token offsets, so per-token log-probs are not
read (DeepConf and the policy-confidence scorer need the completions engine too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ttscale.engines.base import Continuation, ModelInfo, NextTokenLogprobs
from ttscale.engines.openai_http import OpenAICompletionsEngine
from ttscale.errors import ConfigError, EngineError
from ttscale.http_client import extra_fields
from ttscale.prompts import decode_messages
from ttscale.thoughts import THINK_TAGS

REASONING_FIELDS = ("reasoning_content", "reasoning")  # SGLang and vLLM; newer vLLM


class OpenAIChatEngine(OpenAICompletionsEngine):
    """:class:`~ttscale.engines.base.Policy` over an OpenAI-compatible chat endpoint (whole
    solutions; see the module doc)."""

    reads_messages = True  # the prompt must be chat messages (--prompt messages)

    @property
    def info(self) -> ModelInfo:
        info = super().info
        return ModelInfo(name=info.name, parameters=info.parameters,
                         context_length=info.context_length,
                         extra={**info.extra, "backend": "openai-chat"})

    async def _one(self, prefix: str, stops: list[str], max_tokens: int, temperature: float,
                   top_p: float, seed: int) -> Continuation:
        decoded = decode_messages(prefix)
        if decoded is None:
            raise ConfigError("the openai-chat engine sends chat messages: use --prompt messages")
        messages, template_kwargs, partial = decoded
        if partial.strip():
            raise ConfigError("the openai-chat engine answers whole solutions only (greedy, "
                              "majority, bon and the adaptive methods); step-wise searches "
                              "continue partial solutions: use --engine openai (completions)")
        client = self._client()
        assert self._semaphore is not None and self._model is not None
        kwargs: dict[str, Any] = {"model": self._model, "messages": messages,
                                  "max_tokens": max_tokens, "temperature": temperature,
                                  "top_p": top_p, "n": 1, "seed": seed}
        if stops:
            kwargs["stop"] = stops
        extra = dict(self.extra_body or {})
        if template_kwargs:  # Qwen3's enable_thinking, as vLLM and SGLang take it
            extra["chat_template_kwargs"] = {**extra.get("chat_template_kwargs", {}),
                                             **template_kwargs}
        if extra:
            kwargs["extra_body"] = extra
        async with self._semaphore:
            response = await self._with_retries(lambda: client.chat.completions.create(**kwargs))
        return self._read(continuation_from_chat, response, stops)

    async def next_token_logprobs(self, prefixes: Sequence[str],
                                  candidates: Sequence[str]) -> list[NextTokenLogprobs]:
        raise EngineError("the openai-chat engine cannot read next-token log-probabilities: "
                          "the judge scorer needs the completions engine (--engine openai)")


def continuation_from_chat(response: Any, stops: Sequence[str]) -> Continuation:
    """One ``n=1`` chat answer as a :class:`Continuation`: the thought (a reasoning parser's
    field) between markers, then the content."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise EngineError("the server's chat answer has no choices")
    choice = choices[0]
    message = choice.message
    fields = extra_fields(message)
    reasoning = next((fields[k] for k in REASONING_FIELDS if fields.get(k)), None)
    if reasoning is None:
        text = message.content or ""
    elif message.content is None:  # the parsers' word for a thought that never closed
        text = f"{THINK_TAGS.open}\n{reasoning}"
    else:
        text = f"{THINK_TAGS.open}\n{reasoning}\n{THINK_TAGS.close}\n\n{message.content}"
    stop_reason = extra_fields(choice).get("stop_reason")
    if choice.finish_reason == "length":
        finish, stop_string = "length", None
    elif isinstance(stop_reason, str) and stop_reason in stops:  # vLLM names the stop hit
        finish, stop_string = "stop", stop_reason
    else:
        finish, stop_string = "eos", None
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return Continuation(text=text, finish_reason=finish,  # type: ignore[arg-type]
                        prompt_tokens=prompt_tokens, cached_prompt_tokens=min(cached,
                                                                              prompt_tokens),
                        generated_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                        stop_string=stop_string)
