"""A reasoning policy behind ``ttscale serve``: the thought in ``reasoning_content`` (markers
removed), the answer part alone in ``content``, as vLLM's and SGLang's reasoning parsers
answer; the text endpoint keeps the text as written.

The policy is the embedded model with few-shot examples that think between ``<think>``
markers (``tests/data/thoughts/fewshot_thinking.txt``): it imitates them, so a real server
process answers with real thoughts."""

from __future__ import annotations

import sys
from pathlib import Path

import openai
import pytest

from server_process import free_port, running_server

FEWSHOT = Path(__file__).parent / "data" / "thoughts" / "fewshot_thinking.txt"
PROBLEM = "Sam has 12 apples and buys 9 more. How many apples does he have?"
LIMIT_S = 600.0
GREEDY = {"method": "greedy", "budget": 1}
MODEL = "SmolLM2-135M-Instruct"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve-thinking") / "server.log"
    command = [sys.executable, "-m", "ttscale.cli.main", "serve", "--port", str(port),
               "--threads", "2", "--n-ctx", "4096", "--max-tokens", "120",
               "--prompt", f"fewshot:{FEWSHOT}", "--thinking", "on", "--prm", "none",
               "--method", "greedy", "--budget", "1", "--log-level", "warning"]
    with running_server(command, f"http://127.0.0.1:{port}/health", log):
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                            max_retries=0, timeout=LIMIT_S)


@pytest.fixture(scope="module")
def written(client):
    """The solution as the model wrote it, from the text endpoint."""
    reply = client.completions.create(model=MODEL, prompt=PROBLEM, extra_body=GREEDY)
    text = reply.choices[0].text
    assert text.lstrip().startswith("<think>") and "</think>" in text, text
    return text


def test_chat_puts_the_thought_in_reasoning_content_and_the_answer_in_content(client,
                                                                              written):
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROBLEM}], extra_body=GREEDY)
    message = reply.choices[0].message
    reasoning = message.model_extra["reasoning_content"]
    thought, answer_part = written.split("</think>", 1)
    assert reasoning == thought.strip().removeprefix("<think>").strip()
    assert "<think>" not in message.content and "</think>" not in message.content
    assert message.content.split() == answer_part.split()  # the same words, steps rejoined
    extra = reply.model_extra["ttscale"]
    assert extra["answer"] is not None and f"\\boxed{{{extra['answer']}}}" in message.content


def test_a_stream_sends_the_thought_as_reasoning_deltas_before_the_content(client):
    whole = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROBLEM}], extra_body=GREEDY)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROBLEM}], stream=True,
        extra_body=GREEDY)
    order, reasoning, content = [], "", ""
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if (delta.model_extra or {}).get("reasoning_content"):
            order.append("reasoning")
            reasoning += delta.model_extra["reasoning_content"]
        if delta.content:
            order.append("content")
            content += delta.content
    assert order[0] == "reasoning" and "reasoning" not in order[1:]
    assert reasoning == whole.choices[0].message.model_extra["reasoning_content"]
    assert content == whole.choices[0].message.content


def chat_engine_run(client, tmp_path, max_tokens: int):
    """A one-problem run of ``--engine openai-chat`` against this server, beside the server's
    own answer to the same request: (its message, the run's record)."""
    import json

    from typer.testing import CliRunner

    from ttscale.cli.main import app

    folder = tmp_path / f"tokens-{max_tokens}"
    folder.mkdir()
    dataset = folder / "problems.jsonl"
    dataset.write_text(json.dumps({"id": "p", "problem": PROBLEM, "answer": "21"}) + "\n")
    direct = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROBLEM}], max_tokens=max_tokens,
        extra_body=GREEDY).choices[0].message
    result = CliRunner().invoke(app, [
        "run", "--engine", "openai-chat", "--base-url", str(client.base_url).rstrip("/"),
        "--prompt", "messages", "--dataset", str(dataset), "--method", "majority", "--n", "2",
        "--prm", "none", "--max-solution-tokens", str(max_tokens), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    [record] = map(json.loads, (folder / "run" / "records.jsonl").read_text().splitlines())
    return direct, record


def test_the_chat_engine_records_the_servers_thought_and_reads_the_answer_after_it(
        client, tmp_path):
    """``--engine openai-chat`` against this server: the thought it returns in
    reasoning_content lands in the record's thought steps, the answer in the answer part."""
    direct, record = chat_engine_run(client, tmp_path, 120)
    assert direct.content  # the thought closed (as the text endpoint's test checks)
    thought = "\n\n".join(n["text"] for n in record["tree"] if n.get("thought"))
    assert thought.startswith("<think>") and direct.model_extra["reasoning_content"] in thought
    for candidate in record["candidates"]:  # the server answers greedily: both agree
        assert candidate["thought"]["answer_part"]
        assert candidate["answer"] is not None
        assert f"\\boxed{{{candidate['answer']}}}" in direct.content
    assert record["ledger"]["policy_tokens"]["generated"] > 0


def test_a_thought_the_server_reports_unclosed_stays_open_and_answers_nothing(client,
                                                                               tmp_path):
    """Eight tokens end the answer inside its thought: the server sends null content, as
    vLLM's parsers do, and the record keeps the thought open (no ``</think>`` made up)."""
    direct, record = chat_engine_run(client, tmp_path, 8)
    assert direct.content is None and direct.model_extra["reasoning_content"]
    thought = "\n\n".join(n["text"] for n in record["tree"] if n.get("thought"))
    assert thought.startswith("<think>") and "</think>" not in thought
    assert direct.model_extra["reasoning_content"] in thought
    for candidate in record["candidates"]:
        assert not candidate["thought"]["answer_part"] and candidate["answer"] is None
