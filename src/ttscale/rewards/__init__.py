"""Scorers: one score in [0, 1] per step. Each PRM format lives in its own module here.

A scorer is named by a spec string, as ``--prm`` takes it:

* a model-free or policy-based scorer by name: ``self`` (the policy's own confidence),
  ``arith`` (exact arithmetic checker), ``grounded`` (arithmetic, plus numbers traced to the
  problem), ``agreement``, ``judge`` (the policy as a judge);
* a PRM checkpoint as ``FORMAT:PATH`` — ``qwen-prm``, ``math-shepherd``, ``rlhflow``,
  ``skywork`` — with a local folder or a hub name;
* a PRM behind a server as ``http://host:port`` (vLLM's pooling API);
* ``none`` for methods that need no scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ttscale.errors import ConfigError
from ttscale.registry import Registry, unknown_name_message
from ttscale.rewards.base import ScoreBatch, Scorer

if TYPE_CHECKING:
    from ttscale.engines.base import Policy

__all__ = ["CATALOGUE", "PATH_KINDS", "SCORERS", "ScoreBatch", "Scorer", "ScorerEntry",
           "ScorerOptions", "canonical_spec", "check_scorer_spec", "load_scorer", "scorer_kind"]


@dataclass(frozen=True)
class ScorerEntry:
    name: str
    target: str  # "module:attribute", imported only when used
    kind: str  # model-free | policy | checkpoint | shipped | head | http
    summary: str  # the input format and read-out, one line, for `ttscale prms`
    aliases: tuple[str, ...] = ()


CATALOGUE: tuple[ScorerEntry, ...] = (
    ScorerEntry("confidence", "ttscale.rewards.confidence:PolicyConfidenceScorer", "model-free",
                "the policy's own geometric-mean token probability of each step",
                aliases=("self",)),
    ScorerEntry("arithmetic", "ttscale.rewards.arithmetic:ArithmeticScorer", "model-free",
                "equations written in a step checked exactly (no model); wrong arithmetic "
                "scores low", aliases=("arith",)),
    ScorerEntry("grounded", "ttscale.rewards.grounded:GroundedScorer", "model-free",
                "equations checked (no model), each operand traced to the problem or an "
                "earlier step; undone work and an answer unlike the last result score low",
                aliases=("ground",)),
    ScorerEntry("agreement", "ttscale.rewards.outcome:AnswerAgreementScorer", "model-free",
                "share of the sampled solutions that reach the same final answer"),
    ScorerEntry("judge", "ttscale.rewards.judge:LLMJudgeScorer", "policy",
                "the policy asked, per step, whether it is correct; P(yes) from its "
                "next-token log-probs"),
    ScorerEntry("qwen-prm", "ttscale.rewards.qwen_prm:QwenMathPRM", "checkpoint",
                "Qwen2.5-Math-PRM: chat with the card's system prompt, <extra_0> after each "
                "step, P(label 1) of the 2-label head there"),
    ScorerEntry("math-shepherd", "ttscale.rewards.math_shepherd:MathShepherdPRM", "checkpoint",
                "Math-Shepherd: question + steps each ending ' ки', softmax over the '+'/'-' "
                "logits at each tag"),
    ScorerEntry("rlhflow", "ttscale.rewards.rlhflow:RLHFlowPRM", "checkpoint",
                "RLHFlow Llama3.1-8B-PRM: one user turn per step answered '+', P('+') at "
                "each assistant turn"),
    ScorerEntry("skywork", "ttscale.rewards.skywork:SkyworkPRM", "checkpoint",
                "Skywork-o1-Open-PRM-Qwen-2.5: bos + question + newline-ended steps, "
                "sigmoid of the value head at each step end"),
    ScorerEntry("ttscale-smollm2", "ttscale.rewards.value_head:ShippedValueHeadPRM", "shipped",
                "ttscale's own PRM for the embedded SmolLM2-135M: a value head trained on "
                "Monte-Carlo step labels, read at each step's newline (llama.cpp hidden "
                "states; no extra needed)"),
    ScorerEntry("value-head", "ttscale.rewards.value_head:ValueHeadPRM", "head",
                "a value head from `ttscale prm train` (give its folder): problem + "
                "newline-ended steps, sigmoid of the head at each newline"),
    ScorerEntry("http", "ttscale.rewards.http_prm:HTTPProcessRewardModel", "http",
                "a PRM behind a server's pooling API (vLLM --task reward, or `ttscale prm "
                "serve`): give its URL, e.g. http://127.0.0.1:8001, and --prm-format"),
)

PATH_KINDS = ("checkpoint", "head")  # specs written NAME:PATH
SCORERS: Registry[type] = Registry("scorer")
_BY_NAME: dict[str, ScorerEntry] = {}
for _entry in CATALOGUE:
    SCORERS.register(_entry.name, _entry.target)
    for _name in (_entry.name, *_entry.aliases):
        _BY_NAME[_name] = _entry


@dataclass(frozen=True)
class ScorerOptions:
    """Settings for scorers that run a model of their own."""

    device: str = "cpu"
    dtype: str = "auto"
    trust_remote_code: bool = False
    http_format: str = "qwen-prm"
    api_key: str | None = None
    parameters: int | None = None


def _split(spec: str) -> tuple[ScorerEntry | None, str | None]:
    """(catalogue entry, checkpoint path or URL) of a spec; entry None for ``none``."""
    spec = spec.strip()
    if spec == "none":
        return None, None
    if spec.startswith(("http://", "https://")):
        return _BY_NAME["http"], spec
    name, sep, path = spec.partition(":")
    if name not in _BY_NAME:
        known = [n for n in _BY_NAME if n != "http"] + ["none", "http://HOST:PORT"]
        raise ConfigError(unknown_name_message("PRM", name, known) +
                          " Checkpoint formats take a path: qwen-prm:/path/to/model.")
    entry = _BY_NAME[name]
    if entry.kind == "checkpoint" and not path:
        raise ConfigError(f"{name} needs a checkpoint: --prm {name}:/path/to/model "
                          "(a local folder or a hub name)")
    if entry.kind == "head" and not path:
        raise ConfigError(f"{name} needs the folder `ttscale prm train` wrote: --prm "
                          f"{name}:/path/to/head")
    if entry.kind not in PATH_KINDS and sep:
        raise ConfigError(f"{name} takes no path; write --prm {name}")
    return entry, path or None


def canonical_spec(spec: str) -> str:
    """The spec with aliases resolved, as run records store it (``self`` → ``confidence``)."""
    entry, path = _split(spec)
    if entry is None:
        return "none"
    if entry.kind == "http":
        return path or ""
    return f"{entry.name}:{path}" if path else entry.name


def scorer_kind(spec: str) -> str | None:
    """The catalogue kind of a spec (model-free, policy, checkpoint, shipped, head, http);
    None for none."""
    entry, _ = _split(spec)
    return entry.kind if entry is not None else None


def check_scorer_spec(spec: str, options: ScorerOptions | None = None) -> None:
    """Cheap checks before any model is loaded: the name, and for a local checkpoint its
    folder and architecture (a wrong format would give meaningless scores)."""
    entry, path = _split(spec)
    if entry is None or entry.kind != "checkpoint" or path is None:
        return
    from pathlib import Path

    from ttscale.rewards.hf_prm import check_architecture, read_config

    if not Path(path).expanduser().exists() and _looks_like_hub_name(path):
        return  # resolved (downloaded or read from the hub cache) when loaded
    cls = SCORERS.get(entry.name)
    folder, config = read_config(path, entry.name)
    check_architecture(config, folder, entry.name, cls.architectures, cls.model_types)


def _looks_like_hub_name(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not path.startswith((".", "~"))


def load_scorer(spec: str, *, policy: Policy | None = None,
                options: ScorerOptions | None = None) -> Scorer | None:
    """Build the scorer a spec names; ``None`` for ``none``."""
    options = options or ScorerOptions()
    entry, path = _split(spec)
    if entry is None:
        return None
    cls = SCORERS.get(entry.name)
    if entry.kind == "checkpoint":
        from ttscale.rewards.hf_prm import resolve_checkpoint

        return cls(resolve_checkpoint(path or "", entry.name), device=options.device,
                   dtype=options.dtype, trust_remote_code=options.trust_remote_code)
    if entry.kind in ("shipped", "head"):
        from pathlib import Path

        if path is not None and not Path(path).expanduser().is_dir():
            raise ConfigError(f"{path} is not a folder: give the --out folder of "
                              "`ttscale prm train`")
        return cls(path) if path is not None else cls()
    if entry.kind == "http":
        scorer = cls(path, format=options.http_format, api_key=options.api_key,
                     parameters=options.parameters)
        scorer.check()  # fail fast when the server is down
        return scorer
    if entry.kind == "policy":
        if policy is None:
            raise ConfigError(f"the {entry.name} scorer runs on the policy engine; none given")
        return cls(policy)
    return cls()
