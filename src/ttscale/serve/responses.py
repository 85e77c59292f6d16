"""A finished search as an OpenAI response: a chat completion or a text completion, whole or as
server-sent event chunks. The content is the chosen solution; ``usage`` counts every token the
search spent; the ``ttscale`` field carries the answer, its score, the method and the FLOPs.

A reasoning policy's thought goes where vLLM's and SGLang's reasoning parsers put it: in a
chat message's ``reasoning_content`` (markers removed), the answer part alone in ``content``;
a text completion keeps the text as the model wrote it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from ttscale.compute import Ledger
from ttscale.run.solve import Solution, SolveResult
from ttscale.search import METHODS
from ttscale.serve.requests import SearchRequest
from ttscale.thoughts import THINK_TAGS, ThinkingFormat


@dataclass(frozen=True)
class Answered:
    """A search's result with what the response needs beside it."""

    request: SearchRequest
    result: SolveResult
    scorer: str  # the scorer as run records name it; "none" when the method used none
    delimiter: str  # between steps, as the policy wrote them
    seconds: float
    id: str
    created: int

    def solutions(self) -> tuple[Solution, ...]:
        return self.result.ranked[:self.request.n]

    thinking: ThinkingFormat | None = None  # the policy's thought markers, if it thinks

    def text(self, solution: Solution) -> str:
        return self.delimiter.join(solution.steps)

    def content(self, solution: Solution) -> str:
        """A chat message's content: the answer part, after any thought."""
        return self.delimiter.join(solution.answer_steps)

    def reasoning(self, solution: Solution) -> str | None:
        return solution.thought(self.thinking or THINK_TAGS)


def finish_reason(solution: Solution) -> str:
    """OpenAI's: ``length`` when the solution was cut off before an answer, else ``stop``."""
    cut = solution.finish_reason in ("length", "truncated")
    return "length" if cut and solution.answer is None else "stop"


def usage(ledger: Ledger) -> dict:
    """Every token the search spent, the policy's and the scorer's together; tokens served
    from a prefix cache are part of ``prompt_tokens`` and shown in ``cached_tokens``."""
    spent = ledger.policy + ledger.scorer
    return {"prompt_tokens": spent.prompt, "completion_tokens": spent.generated,
            "total_tokens": spent.prompt + spent.generated,
            "prompt_tokens_details": {"cached_tokens": spent.cached_prompt}}


def ttscale_field(done: Answered) -> dict:
    result, request = done.result, done.request
    ledger, plan = result.ledger, result.plan
    return {
        "answer": result.answer,
        "score": result.score,
        "method": plan.decision.method if plan else result.method,
        "requested_method": request.method,
        "budget": request.budget,
        "width": _width(result, request),
        "prm": done.scorer,
        "aggregation": request.aggregation,
        "step_aggregation": request.step_aggregation,
        "candidates": result.candidates,
        "flops": {"policy": ledger.policy_flops, "scorer": ledger.scorer_flops,
                  "total": ledger.total_flops},
        "ledger": ledger.to_dict(),
        "plan": plan.to_dict() if plan else None,
        "seconds": round(done.seconds, 3),
    }


def _width(result: SolveResult, request: SearchRequest) -> int | None:
    """The width M the search ran with; None for methods that have none."""
    if result.plan:
        return result.plan.decision.width
    return request.width if METHODS[request.method].uses_width else None


def _choice_extra(solution: Solution) -> dict:
    return {"answer": solution.answer, "score": solution.score}


def _message(done: Answered, solution: Solution) -> dict:
    message: dict = {"role": "assistant", "content": done.content(solution)}
    reasoning = done.reasoning(solution)
    if reasoning is not None:
        message["reasoning_content"] = reasoning
        if solution.ends_in_thought:  # as vLLM's parsers: no content after an open thought
            message["content"] = None
    return message


def completion_body(done: Answered) -> dict:
    """The whole response of a non-streaming request."""
    if done.request.endpoint == "chat":
        choices = [{"index": i, "message": _message(done, s),
                    "finish_reason": finish_reason(s), "logprobs": None,
                    "ttscale": _choice_extra(s)}
                   for i, s in enumerate(done.solutions())]
        kind = "chat.completion"
    else:
        choices = [{"index": i, "text": done.text(s), "finish_reason": finish_reason(s),
                    "logprobs": None, "ttscale": _choice_extra(s)}
                   for i, s in enumerate(done.solutions())]
        kind = "text_completion"
    return {"id": done.id, "object": kind, "created": done.created,
            "model": done.request.model, "choices": choices, "usage": usage(done.result.ledger),
            "system_fingerprint": None, "ttscale": ttscale_field(done)}


def event_stream(done: Answered) -> Iterator[str]:
    """The answer as server-sent events: per solution, its role, its steps one chunk each,
    then its finish reason (the last one with the ``ttscale`` field); a usage chunk when
    ``stream_options.include_usage`` asks for it; then ``[DONE]``."""
    chat = done.request.endpoint == "chat"
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict], **extra) -> str:
        body = {"id": done.id, "object": kind, "created": done.created,
                "model": done.request.model, "choices": choices, **extra}
        return f"data: {json.dumps(body)}\n\n"

    def piece(index: int, text: str | None, reason: str | None = None,
              role: bool = False, field: str = "content") -> dict:
        if chat:
            delta = {} if text is None else {field: text}
            if role:
                delta["role"] = "assistant"
            return {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
        return {"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}

    solutions = done.solutions()
    for index, solution in enumerate(solutions):
        if chat:
            yield chunk([piece(index, "", role=True)])
            reasoning = done.reasoning(solution)
            if reasoning is not None:  # the thought first, in one chunk, as a parser's delta
                yield chunk([piece(index, reasoning, field="reasoning_content")])
        for number, step in enumerate(solution.answer_steps if chat else solution.steps):
            yield chunk([piece(index, step if number == 0 else done.delimiter + step)])
        # the ttscale field rides on the last choice chunk: clients that read
        # chunk.choices[0] on every chunk never see one without choices unless they ask
        extra = {"ttscale": ttscale_field(done)} if index == len(solutions) - 1 else {}
        yield chunk([piece(index, None, finish_reason(solution))], **extra)
    if done.request.include_usage:
        yield chunk([], usage=usage(done.result.ledger))
    yield "data: [DONE]\n\n"
