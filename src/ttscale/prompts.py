"""How a problem becomes the policy's prefix.

Two formats:

* ``fewshot`` — a plain few-shot prompt (``Problem: …\\nSolution:\\nStep 1: …\\nThe answer is
  \\boxed{N}.``) that small base-like models follow; the embedded SmolLM2-135M needs it. Its
  steps are lines (delimiter ``"\\n"``): small models write one step per line whatever the
  shots show, and a solution that is one long "step" would turn step-level search into
  Best-of-N. The shipped examples have one, two and three steps: a small policy copies the
  examples' length, and with two-step examples only it invents a second step for a
  one-operation problem. ``fewshot:FILE`` uses the user's own examples (a text file with
  ``{problem}`` where the problem goes).
* ``chat`` — the paper's math system prompt ("Please reason step by step, and put your final
  answer within \\boxed{}.") and the problem as the user turn, rendered with the model's chat
  template: the one in the GGUF file, a named template shipped here (``chatml``, ``llama3``,
  ``qwen3``, ``deepseek-r1``) or a Jinja file of the user's.
* ``messages`` — the same two messages, not rendered: the ``openai-chat`` engine sends them to
  a server's chat endpoint, whose template (and reasoning parser) apply there. The prefix
  carries them as a JSON document (``encode_messages``), which only that engine reads.

Reasoning policies think before they answer (``thoughts.py``). ``thinking``: ``auto`` lets
the template decide (Qwen3 thinks unless told not to; R1 distills' template opens the thought
in the prompt), ``on`` expects a thought even where the template says nothing of one, ``off``
renders Qwen3's ``enable_thinking=False`` and, for a template that opens the thought itself
(R1), closes it at once — the empty thought Qwen3 writes when not thinking ("NoThinking",
Ma et al. 2025).

Long prompts and templates live in files under ``prompt_files/``, not in code."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

from ttscale.errors import ConfigError
from ttscale.registry import parse_choice
from ttscale.settings import SearchSettings
from ttscale.steps import DEFAULT_STEP_DELIMITER
from ttscale.thoughts import THINK_TAGS, ThinkingFormat

PROMPT_FORMATS = ("fewshot", "chat", "messages")
NEEDS_A_THOUGHT = ("a thinking budget or early exit needs a policy that thinks: this prompt "
                   "expects no thought (use a reasoning model's chat template, or --thinking on)")
MESSAGES_MARK = "\x00ttscale-messages\x00"  # starts a prefix that holds chat messages
THINKING_MODES = ("auto", "on", "off")
# shipped templates (the tool-free cores of the families' own), for servers that do not hand
# out the model's: deepseek-r1 is R1-Distill-Qwen's January 2025 revision, which opens the
# thought in the prompt; qwen3 reads enable_thinking
BUILTIN_TEMPLATES = ("chatml", "llama3", "qwen3", "deepseek-r1")
FEWSHOT_END_STOPS = ("\nProblem:",)
FEWSHOT_STEP_DELIMITER = "\n"


@lru_cache(maxsize=None)
def prompt_file(name: str) -> str:
    return (resources.files("ttscale") / "prompt_files" / name).read_text(encoding="utf-8")


def system_prompt() -> str:
    return prompt_file("system_math.txt").strip()


@dataclass(frozen=True)
class PromptFormat:
    """Renders problems for one policy. ``end_stops`` are strings after which the policy has
    left the solution (the next few-shot problem); chat models end at end-of-sequence."""

    kind: str = "fewshot"
    chat_template: str | None = None  # Jinja source, for kind == "chat"
    bos_token: str = ""
    fewshot: str | None = None  # the few-shot text with {problem}; None: the shipped one
    thinking: str = "auto"  # a reasoning policy's thought: auto (the template's), on, off

    def __post_init__(self) -> None:
        parse_choice("prompt format", self.kind, PROMPT_FORMATS)
        parse_choice("thinking mode", self.thinking, THINKING_MODES)
        if self.kind == "chat" and not self.chat_template:
            raise ConfigError(
                "the chat prompt format needs a chat template: this model has none built in; "
                f"pass --chat-template with one of {', '.join(BUILTIN_TEMPLATES)} or a .jinja "
                "file, or use --prompt fewshot"
            )
        if self.fewshot is not None and "{problem}" not in self.fewshot:
            raise ConfigError("the few-shot prompt has no {problem} placeholder: end it with "
                              "'Problem: {problem}' and 'Solution:' lines as the shipped "
                              "prompt_files/fewshot_math.txt does")

    @property
    def text(self) -> str:
        """The template or few-shot text this format renders with (a run's identity)."""
        if self.kind == "messages":
            return system_prompt()
        if self.kind == "chat":
            return self.chat_template or ""
        return self.fewshot if self.fewshot is not None else prompt_file("fewshot_math.txt")

    @property
    def end_stops(self) -> tuple[str, ...]:
        return FEWSHOT_END_STOPS if self.kind == "fewshot" else ()

    @property
    def step_delimiter(self) -> str:
        return FEWSHOT_STEP_DELIMITER if self.kind == "fewshot" else DEFAULT_STEP_DELIMITER

    def apply(self, settings: SearchSettings) -> SearchSettings:
        """Settings with this format's solution-ending stops, and its step delimiter unless the
        user chose one. A thinking budget or early exit for a prompt that expects no thought is
        refused here, where a run, ``ttscale.solve`` and the server all pass before they load
        a problem."""
        if settings.thinks_in_chunks and self.thinking_format is None:
            raise ConfigError(NEEDS_A_THOUGHT)
        return replace(settings, end_stops=self.end_stops,
                       step_delimiter=settings.step_delimiter or self.step_delimiter)

    def render(self, problem: str) -> str:
        if self.kind == "fewshot":
            return self.text.replace("{problem}", problem.strip())
        if self.kind == "messages":
            return encode_messages(
                [{"role": "system", "content": system_prompt()},
                 {"role": "user", "content": problem.strip()}],
                {} if self.thinking == "auto" else {"enable_thinking": self.thinking == "on"})
        prompt = render_chat(self.chat_template or "", [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": problem.strip()},
        ], self.bos_token, enable_thinking=self.thinking != "off")
        if self.thinking == "off" and _opens_thought(prompt):
            prompt += "\n" + THINK_TAGS.close + "\n\n"
        return prompt

    @cached_property
    def thinking_format(self) -> ThinkingFormat | None:
        """The thought markers of what the policy writes after this prompt; None when it
        writes no thought."""
        if self.thinking == "off":
            return None
        if self.kind == "fewshot":
            return THINK_TAGS if self.thinking == "on" else None
        if self.kind == "messages":  # the engine writes a server's reasoning between markers
            return THINK_TAGS
        if _opens_thought(self.render("1 + 1")):
            return replace(THINK_TAGS, opened_by_prompt=True)
        knows_thoughts = THINK_TAGS.close in (self.chat_template or "")
        return THINK_TAGS if self.thinking == "on" or knows_thoughts else None


def encode_messages(messages: list[dict[str, str]], template_kwargs: dict) -> str:
    """A prefix holding chat messages (and the chat template's switches) for a chat engine."""
    return MESSAGES_MARK + json.dumps({"messages": messages, "template": template_kwargs},
                                      ensure_ascii=False) + "\n"


def decode_messages(prefix: str) -> tuple[list[dict[str, str]], dict, str] | None:
    """(messages, template switches, the assistant text after them) of a prefix made by
    ``encode_messages``; None for any other prefix."""
    if not prefix.startswith(MESSAGES_MARK):
        return None
    document, _, rest = prefix[len(MESSAGES_MARK):].partition("\n")
    data = json.loads(document)
    return data["messages"], data["template"], rest


def _opens_thought(prompt: str) -> bool:
    return prompt.rstrip().endswith(THINK_TAGS.open)


def render_chat(template: str, messages: list[dict[str, str]], bos_token: str = "",
                enable_thinking: bool = True) -> str:
    """The prompt as transformers' ``apply_chat_template`` renders it (same Jinja settings);
    ``enable_thinking`` is Qwen3's switch, ignored by templates that do not read it."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # a template read from a model file is untrusted input: render it sandboxed
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token="",
        enable_thinking=enable_thinking,
    )


def read_fewshot_file(path: str) -> str:
    """A user's few-shot prompt file (``--prompt fewshot:FILE``)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"few-shot prompt file {path!r} not found: give a text file with "
                          "{problem} where the problem goes")
    return file.read_text(encoding="utf-8")


def resolve_chat_template(choice: str | None, model_template: str | None) -> str | None:
    """``choice`` is None (use the model's own), a builtin name, or a path to a Jinja file."""
    if choice is None:
        return model_template
    if choice in BUILTIN_TEMPLATES:
        return prompt_file(f"{choice}.jinja")
    path = Path(choice).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise ConfigError(f"chat template {choice!r} is neither a builtin "
                      f"({', '.join(BUILTIN_TEMPLATES)}) nor an existing file")
