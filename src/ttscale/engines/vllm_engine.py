"""A policy engine on vLLM in-process (extra ``vllm``; a CUDA GPU): ``vllm.LLM`` with
automatic prefix caching, so a search's shared step prefixes are computed once.

Requests map as in the HTTP engine: each sample is its own request (``n=1``) whose seed is
``sample_seed(seed, j, prefix)``, so sample ``j`` of a prefix does not depend on how many
samples were asked for, nor on which process draws it (a Ray actor or a server). The calls
that arrive while one is generating go out together as the next ``generate`` (the scheduler's
coalescer), where vLLM's own continuous batching takes over.

How a ``RequestOutput`` maps to :class:`~ttscale.engines.base.Continuation`:

* ``finish_reason``: ``"length"`` stays; ``"stop"`` with a string ``stop_reason`` is that stop
  string (vLLM cuts the text before it); ``"stop"`` with ``None`` or a token id is ``"eos"``.
* ``generated_tokens`` is the number of token ids generated (the end-of-sequence token and
  the tokens that spell a stop string included, as every engine counts them);
* ``token_logprobs`` / ``token_offsets`` are the sampled tokens' log-probs (``logprobs=0``:
  the chosen token only) and where their text starts, for the tokens that start inside the
  returned text; the end-of-sequence token has no text and no entry. vLLM reports log-probs
  of the model's raw distribution (its default ``logprobs_mode``), as the other engines do.
* ``cached_prompt_tokens`` is ``num_cached_tokens``: the prefix-cache hits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ttscale.engines import EngineSpec
from ttscale.engines.base import Continuation, FinishReason, ModelInfo, ThreadedEngine
from ttscale.engines.model_names import parameters_from_name
from ttscale.engines.sampling import sample_seed
from ttscale.errors import ConfigError, EngineError, ModelLoadError


@dataclass(frozen=True)
class SampleRequest:
    """One vLLM request: sample ``sample`` of prefix ``prefix_index``."""

    prefix_index: int
    sample: int
    prompt: str
    params: dict[str, Any]  # SamplingParams keyword arguments


def sampling_requests(prefixes: Sequence[str], n: int, stop: Sequence[str], max_tokens: int,
                      temperature: float, top_p: float, seed: int,
                      first_sample: int = 0) -> list[SampleRequest]:
    """The requests of one ``extend`` call, equal prefixes next to each other (for the
    prefix cache), each with its own seed."""
    stops = [s for s in stop if s]
    order = sorted(range(len(prefixes)), key=lambda i: prefixes[i])
    requests = []
    for i in order:
        for j in range(n):
            params: dict[str, Any] = {
                "n": 1, "max_tokens": max_tokens, "temperature": temperature,
                "top_p": top_p if temperature > 0 else 1.0, "logprobs": 0,
                "seed": sample_seed(seed, first_sample + j, prefixes[i]),
            }
            if stops:
                params["stop"] = stops
            requests.append(SampleRequest(i, j, prefixes[i], params))
    return requests


def continuation_from_output(output: Any) -> Continuation:
    """One ``n=1`` ``RequestOutput`` as a :class:`Continuation` (see the module doc)."""
    completion = output.outputs[0]
    text = completion.text or ""
    token_ids = list(completion.token_ids or ())
    finish_reason: FinishReason
    stop_string = None
    if completion.finish_reason == "length":
        finish_reason = "length"
    elif isinstance(getattr(completion, "stop_reason", None), str):
        finish_reason, stop_string = "stop", completion.stop_reason
    else:
        finish_reason = "eos"
    logprobs, offsets = _sampled_logprobs(completion.logprobs, token_ids, text)
    prompt_tokens = len(output.prompt_token_ids or ())
    cached = int(getattr(output, "num_cached_tokens", 0) or 0)
    return Continuation(
        text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
        cached_prompt_tokens=max(0, min(cached, prompt_tokens)),
        generated_tokens=len(token_ids), token_logprobs=logprobs, token_offsets=offsets,
        stop_string=stop_string)


def _sampled_logprobs(listing: Any, token_ids: list[int], text: str
                      ) -> tuple[tuple[float, ...] | None, tuple[int, ...] | None]:
    """Log-probs and text offsets of the generated tokens that start inside ``text``."""
    if listing is None:
        return None, None
    values: list[float] = []
    offsets: list[int] = []
    position = 0
    for token_id, entry in zip(token_ids, listing, strict=False):
        chosen = entry.get(token_id) if entry else None
        piece = getattr(chosen, "decoded_token", None) or ""
        if position >= len(text):
            break  # the stop string's tokens, or the end-of-sequence token
        if chosen is None:
            raise EngineError(f"vLLM returned no log-prob for generated token {len(values)} "
                              f"(id {token_id}), which it lists with logprobs=0: this vLLM "
                              "build is faulty")
        values.append(float(chosen.logprob))
        offsets.append(min(position, len(text)))
        position += len(piece)
    return tuple(values), tuple(offsets)


def parameters_from_config(config: Any) -> int | None:
    """Parameter count of a decoder-only transformer from its Hugging Face config (dense
    Llama/Qwen/Mistral layouts: attention with grouped KV heads, a gated MLP, norms and
    the embeddings, tied or not); None where the config lacks a field."""
    try:
        hidden, layers = int(config.hidden_size), int(config.num_hidden_layers)
        heads, mlp = int(config.num_attention_heads), int(config.intermediate_size)
        vocab = int(config.vocab_size)
    except (AttributeError, TypeError):
        return None
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    # Qwen2 always has q/k/v biases; Llama-style configs say so with attention_bias
    qkv_bias = getattr(config, "attention_bias", False) or getattr(
        config, "model_type", "") == "qwen2"
    bias = (heads + 2 * kv_heads) * head_dim if qkv_bias else 0
    per_layer = attention + bias + 3 * hidden * mlp + 2 * hidden
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return layers * per_layer + hidden + vocab * hidden * (1 if tied else 2)


class VLLMEngine(ThreadedEngine):
    """``vllm.LLM`` behind the policy protocol. One engine per GPU (or per tensor-parallel
    group); on a Ray cluster, one per actor with ``--gpus-per-actor 1``."""

    def __init__(self, model: str, *, dtype: str = "auto", trust_remote_code: bool = False,
                 gpu_memory_utilization: float = EngineSpec.gpu_memory_utilization,
                 max_model_len: int | None = None, parameters: int | None = None,
                 tensor_parallel_size: int = 1) -> None:
        if not model:
            raise ConfigError("--engine vllm needs --model: a Hugging Face model folder or "
                              "hub name on this machine")
        try:
            from vllm import LLM
        except ImportError as error:
            raise ConfigError("--engine vllm needs vLLM and a CUDA GPU: pip install "
                              "'ttscale[vllm]'") from error
        dtype = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(
            dtype, "auto")
        try:
            self.llm = LLM(model=model, dtype=dtype, trust_remote_code=trust_remote_code,
                           enable_prefix_caching=True,
                           gpu_memory_utilization=gpu_memory_utilization,
                           max_model_len=max_model_len,
                           tensor_parallel_size=tensor_parallel_size)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"vLLM could not load {model}: {error}") from error
        model_config = self.llm.llm_engine.model_config
        tokenizer = self.llm.get_tokenizer()
        template = getattr(tokenizer, "chat_template", None)
        self._tokenizer = tokenizer
        self._info = ModelInfo(
            name=model,
            parameters=parameters or parameters_from_config(model_config.hf_config)
            or parameters_from_name(model),
            context_length=int(model_config.max_model_len),
            chat_template=template if isinstance(template, str) else None,
            extra={"engine": "vllm", "dtype": str(model_config.dtype).removeprefix("torch."),
                   "path": model})

    @property
    def info(self) -> ModelInfo:
        return self._info

    def tokenize(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text))

    def extend_sync(self, prefixes: list[str], n: int, stop: list[str], max_tokens: int,
                    temperature: float, top_p: float, seed: int,
                    first_sample: int = 0) -> list[list[Continuation]]:
        from vllm import SamplingParams

        requests = sampling_requests(prefixes, n, stop, max_tokens, temperature, top_p, seed,
                                     first_sample)
        outputs = self.llm.generate([r.prompt for r in requests],
                                    [SamplingParams(**r.params) for r in requests],
                                    use_tqdm=False)
        rows: list[list[Continuation | None]] = [[None] * n for _ in prefixes]
        for request, output in zip(requests, outputs, strict=True):
            rows[request.prefix_index][request.sample] = continuation_from_output(output)
        return [[c for c in row if c is not None] for row in rows]

    async def close(self) -> None:
        self.llm = None
