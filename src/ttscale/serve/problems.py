"""The problem a request asks the search to solve: the last user message of a chat, or a
completion's one prompt. Only the problem's text is read; the server's prompt format frames
it for the policy."""

from __future__ import annotations

from typing import Any

from ttscale.serve.refusals import invalid


def chat_problem(messages: Any) -> str:
    """The last user message; system messages and earlier turns are not part of it."""
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' is required: a non-empty list such as "
                      "[{\"role\": \"user\", \"content\": \"What is 2 + 3?\"}]")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid(f"messages[{index}] must be an object with 'role' and 'content'")
    last = messages[-1]
    if last["role"] != "user":
        raise invalid(f"the last message must be the user's problem; it has role "
                      f"{last['role']!r}")
    problem = _text_of(last.get("content"), f"messages[{len(messages) - 1}]").strip()
    if not problem:
        raise invalid("the last user message is empty: send the problem to solve")
    return problem


def prompt_problem(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("'prompt' is required: the problem text, as one string (token ids and "
                      "several prompts per request are not accepted)")
    if not prompt.strip():
        raise invalid("'prompt' is empty: send the problem to solve")
    return prompt.strip()


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                raise invalid(f"{where}: only text parts ({{\"type\": \"text\", \"text\": ...}}) "
                              "are accepted")
            texts.append(part["text"])
        return "\n".join(texts)
    raise invalid(f"{where}: 'content' must be a string or a list of text parts")
