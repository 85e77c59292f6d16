"""Policy engines, one module per backend; heavy imports happen only when one is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from ttscale.engines.base import Continuation, ModelInfo, Policy
from ttscale.errors import ConfigError
from ttscale.hf_backend import DTYPES
from ttscale.registry import parse_choice

__all__ = ["ENGINES", "Continuation", "EngineSpec", "ModelInfo", "Policy", "load_policy"]

ENGINES = ("llama.cpp", "openai", "openai-chat", "hf", "vllm")
FLASH_ATTN = ("auto", "on", "off")  # llama.cpp's attention kernel


@dataclass(frozen=True)
class EngineSpec:
    """Which policy to run. ``model`` is a GGUF path for llama.cpp (None: the embedded
    SmolLM2-135M), the served model's name for an OpenAI-compatible server (None: the one
    the server lists), for hf a model folder, a .gguf file or a Hub name (None: the
    embedded GGUF, dequantized), and for vllm a model folder or Hub name (required).
    ``dtype`` and ``trust_remote_code`` are hf's and vllm's, ``device`` hf's,
    ``gpu_memory_utilization`` vllm's (lower it when a PRM shares the GPU), ``n_gpu_layers``
    and ``flash_attn`` (None: ``$TTSCALE_FLASH_ATTN``, else auto) llama.cpp's."""

    kind: str = "llama.cpp"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    parameters: int | None = None
    n_ctx: int = 32768
    n_threads: int | None = None
    n_gpu_layers: int = 0
    flash_attn: str | None = None
    concurrency: int = 64
    timeout: float = 600.0
    dtype: str = "auto"
    device: str = "cpu"
    trust_remote_code: bool = False
    gpu_memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        parse_choice("engine", self.kind, ENGINES)
        if self.kind in ("openai", "openai-chat") and not self.base_url:
            raise ConfigError(f"the {self.kind} engine needs --base-url, e.g. "
                              "http://127.0.0.1:8000/v1 for `vllm serve MODEL`")
        if self.kind == "llama.cpp" and self.base_url:
            raise ConfigError("--base-url is for --engine openai; llama.cpp runs in-process")
        if self.kind in ("hf", "vllm") and self.base_url:
            raise ConfigError(f"--base-url is for --engine openai; {self.kind} runs in-process")
        if self.kind == "vllm" and not self.model:
            raise ConfigError("--engine vllm needs --model: a model folder or Hub name")
        parse_choice("dtype", self.dtype, DTYPES)
        if self.flash_attn is not None:
            parse_choice("flash_attn", self.flash_attn, FLASH_ATTN)


def load_policy(spec: EngineSpec) -> Policy:
    if spec.kind == "llama.cpp":
        from ttscale.engines.llama_cpp import LlamaCppEngine

        return LlamaCppEngine(spec.model, n_ctx=spec.n_ctx, n_threads=spec.n_threads,
                              n_gpu_layers=spec.n_gpu_layers, flash_attn=spec.flash_attn)
    if spec.kind == "hf":
        from ttscale.engines.hf import HFEngine

        return HFEngine(spec.model, dtype=spec.dtype, device=spec.device,
                        trust_remote_code=spec.trust_remote_code)
    if spec.kind == "vllm":
        from ttscale.engines.vllm_engine import VLLMEngine

        return VLLMEngine(spec.model or "", dtype=spec.dtype,
                          trust_remote_code=spec.trust_remote_code,
                          gpu_memory_utilization=spec.gpu_memory_utilization,
                          parameters=spec.parameters)
    from ttscale.engines.openai_http import OpenAICompletionsEngine, check_server

    check_server(spec.base_url or "", spec.api_key)  # fail fast, with a clear message
    engine = OpenAICompletionsEngine
    if spec.kind == "openai-chat":
        from ttscale.engines.openai_chat import OpenAIChatEngine as engine  # noqa: N813
    return engine(spec.base_url or "", spec.model, api_key=spec.api_key,
                  parameters=spec.parameters, concurrency=spec.concurrency,
                  timeout=spec.timeout)
