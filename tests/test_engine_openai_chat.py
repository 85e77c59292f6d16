"""The chat engine's reading of a server's answer (a reasoning parser's thought between
markers, the content after it) on the OpenAI client's own response objects, and the prompt
that carries chat messages to it."""

from __future__ import annotations

import asyncio

import pytest
from openai.types.chat import ChatCompletion

from fakes import ScriptedPolicy
from ttscale.cli.options import prompt_format
from ttscale.engines.openai_chat import OpenAIChatEngine, continuation_from_chat
from ttscale.errors import ConfigError
from ttscale.prompts import PromptFormat, decode_messages, system_prompt
from ttscale.thoughts import THINK_TAGS, split_thoughts


def answer(message: dict, finish: str = "stop", **choice) -> ChatCompletion:
    return ChatCompletion.model_validate({
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", **message},
                     "finish_reason": finish, **choice}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                  "prompt_tokens_details": {"cached_tokens": 10}}})


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])  # SGLang/vLLM, newer vLLM
def test_a_parsers_thought_comes_back_between_markers_before_the_content(field):
    c = continuation_from_chat(answer({"content": "So \\boxed{7}.", field: "3 + 4 is 7."}), [])
    assert c.text == "<think>\n3 + 4 is 7.\n</think>\n\nSo \\boxed{7}."
    split = split_thoughts(c.text, THINK_TAGS)
    assert (split.state, split.thinking.strip(), split.answer.strip()) == (
        "closed", "3 + 4 is 7.", "So \\boxed{7}.")
    assert (c.finish_reason, c.prompt_tokens, c.cached_prompt_tokens, c.generated_tokens) == (
        "eos", 30, 10, 12)


def test_null_content_beside_a_thought_is_a_thought_that_never_closed():
    c = continuation_from_chat(answer({"content": None, "reasoning_content": "Hmm, 3 + 4"},
                                      "length"), [])
    assert c.text == "<think>\nHmm, 3 + 4" and c.finish_reason == "length"
    assert split_thoughts(c.text).state == "unclosed"


def test_without_a_thought_the_content_is_the_text_and_a_named_stop_is_kept():
    c = continuation_from_chat(answer({"content": "7"}, stop_reason="\n\n"), ["\n\n"])
    assert (c.text, c.finish_reason, c.stop_string) == ("7", "stop", "\n\n")


def test_the_messages_prompt_carries_the_messages_and_the_thinking_switch():
    messages, switches, rest = decode_messages(
        PromptFormat(kind="messages", thinking="off").render("What is 3 + 4?\n"))
    assert messages == [{"role": "system", "content": system_prompt()},
                        {"role": "user", "content": "What is 3 + 4?"}]
    assert (switches, rest) == ({"enable_thinking": False}, "")
    assert decode_messages(PromptFormat(kind="messages").render("x"))[1] == {}
    assert decode_messages("Problem: x\nSolution:") is None


def test_the_chat_engine_and_the_messages_prompt_go_together():
    chat = OpenAIChatEngine("http://127.0.0.1:9/v1", model="m", parameters=1)
    plain = ScriptedPolicy(lambda prefix, j, stop: ("7", "eos"))
    with pytest.raises(ConfigError, match="--prompt messages goes with --engine openai-chat"):
        prompt_format("chat", "chatml", chat)
    with pytest.raises(ConfigError, match="--prompt messages goes with --engine openai-chat"):
        prompt_format("messages", None, plain)
    assert prompt_format("messages", None, chat).kind == "messages"


def test_the_chat_engine_refuses_to_continue_a_partial_solution():
    chat = OpenAIChatEngine("http://127.0.0.1:9/v1", model="m", parameters=1)
    prefix = PromptFormat(kind="messages").render("What is 3 + 4?") + "Step 1: 3 + 4 = 7.\n\n"
    with pytest.raises(ConfigError, match="whole solutions only"):
        asyncio.run(chat._one(prefix, [], 16, 0.7, 1.0, 0))
