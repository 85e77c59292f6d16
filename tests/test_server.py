"""``ttscale serve``: request parsing and admission on their own, then the official ``openai``
client against a real server process on the embedded model (chat, completions, streaming,
settings as extra fields and as a model-name prefix, auth, refusals, and a load test), and
cancellation on disconnect and the limits against the server's app in this process, on a
policy whose searches take as long as the test says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import ScriptedPolicy
from load_generator import run_load
from server_process import free_port, running_server, serving_in_thread
from ttscale.grading import extract_answer
from ttscale.prompts import PromptFormat
from ttscale.run.solve import _ranked
from ttscale.search.result import Candidate
from ttscale.serve.admission import AdmissionGate
from ttscale.serve.app import ServerConfig, create_app, load_service
from ttscale.serve.http import RequestError
from ttscale.serve.requests import ServerDefaults, ServerLimits, parse_model, parse_request
from ttscale.steps import Step

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

MODEL = "SmolLM2-135M-Instruct"
KEY = "test-key-0123456789"
PROBLEM = "Tom has 3 apples and buys 4 more. How many apples does he have?"
README = Path(__file__).resolve().parents[1] / "README.md"


# -- parsing -------------------------------------------------------------------------------
LIMITS = ServerLimits(max_budget=32, max_tokens=512)


def parse(body, endpoint="chat"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(raw, endpoint, MODEL, ServerDefaults(), LIMITS)


def chat(**fields):
    return {"model": MODEL, "messages": [{"role": "user", "content": PROBLEM}], **fields}


def test_a_plain_request_gets_the_server_defaults():
    request = parse(chat())
    defaults = ServerDefaults()
    assert (request.method, request.budget, request.width, request.prm) == (
        defaults.method, defaults.budget, defaults.width, defaults.prm)
    assert request.problem == PROBLEM and request.n == 1 and not request.stream
    assert request.max_tokens == defaults.max_tokens


def test_settings_come_from_extra_fields_or_the_model_prefix():
    by_fields = parse(chat(method="dvts", budget=16, width=4, prm="arith",
                           aggregation="majority", step_aggregation="min", seed=7, n=3,
                           temperature=0.2, max_completion_tokens=100))
    assert (by_fields.method, by_fields.budget, by_fields.width, by_fields.prm) == (
        "dvts", 16, 4, "arith")
    assert (by_fields.aggregation, by_fields.step_aggregation, by_fields.seed, by_fields.n,
            by_fields.temperature, by_fields.max_tokens) == ("majority", "min", 7, 3, 0.2, 100)
    by_name = parse({**chat(), "model": f"dvts-16x4/{MODEL}"})
    assert (by_name.method, by_name.budget, by_name.width) == ("dvts", 16, 4)
    assert by_name.model == f"dvts-16x4/{MODEL}"  # echoed back as sent
    assert parse({**chat(), "model": f"greedy/{MODEL}"}).method == "greedy"
    # a prefix and a field that agree are fine
    assert parse({**chat(budget=16), "model": f"beam-16/{MODEL}"}).budget == 16


def test_the_particle_temperature_reaches_the_search_settings():
    from ttscale.serve.service import SearchService

    service = SearchService(ScriptedPolicy(lambda *a: ("", "stop")), PromptFormat(),
                            ServerConfig())
    plain = parse(chat(method="pf", budget=4))
    assert plain.particle_temperature == ServerDefaults().particle_temperature == 1.0
    assert service.settings(plain).particle_temperature == 1.0
    sent = parse(chat(method="pf", budget=4, particle_temperature=8))
    assert service.settings(sent).particle_temperature == 8.0
    # a server started with another default gives it to the requests that do not send one
    warm = parse_request(json.dumps(chat(method="pf")).encode(), "chat", MODEL,
                         ServerDefaults(particle_temperature=4.0), LIMITS)
    assert warm.particle_temperature == 4.0


def test_a_served_name_with_slashes_still_takes_a_prefix():
    served = "Qwen/Qwen2.5-1.5B-Instruct"
    assert parse_model(served, served) == (None, None, None)
    assert parse_model(f"beam-8x2/{served}", served) == ("beam", 8, 2)


def test_every_registered_method_is_reachable_by_its_model_name_prefix():
    from ttscale.search import METHODS

    for name, spec in METHODS.items():
        prefix = name if spec.fixed_budget else f"{name}-16"
        assert parse_model(f"{prefix}/{MODEL}", MODEL) == (name, None if spec.fixed_budget
                                                           else 16, None)


@pytest.mark.parametrize("body, status, param, words", [
    (chat(messages=None), 400, "messages", "'messages' is required"),
    ({"model": MODEL}, 400, "messages", "'messages' is required"),
    (chat(messages=[{"role": "assistant", "content": "hi"}]), 400, "messages", "last message"),
    (chat(messages=[{"role": "user", "content": "  "}]), 400, "messages", "empty"),
    (chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 400, "messages",
     "text parts"),
    (chat(budget=1000), 400, "budget", "at most 32"),
    (chat(budget=0), 400, "budget", "at least 1"),
    (chat(budget="8"), 400, "budget", "integer"),
    (chat(budget=True), 400, "budget", "integer"),
    (chat(method="mcts"), 400, "method", "unknown method"),
    (chat(method="beam", budget=6, width=4), 400, "width", "multiple of the width"),
    (chat(n=9, budget=8), 400, "n", "cannot exceed the budget"),
    (chat(method="greedy", n=2), 400, "n", "greedy"),
    (chat(max_tokens=10_000), 400, "max_tokens", "at most 512"),
    (chat(temperature=3), 400, "temperature", "between"),
    (chat(particle_temperature=0), 400, "particle_temperature", "above 0"),
    (chat(particle_temperature=5000), 400, "particle_temperature", "between"),
    (chat(particle_temperature="8"), 400, "particle_temperature", "number"),
    (chat(aggregation="best"), 400, "aggregation", "prm_vote"),
    (chat(stop=["\n"]), 400, "stop", "not supported"),
    (chat(tools=[{"type": "function"}]), 400, "tools", "not supported"),
    (chat(logprobs=True), 400, "logprobs", "log-probabilities"),
    (chat(seed=-1), 400, "seed", "at least 0"),
    ({**chat(budget=8), "model": f"beam-16/{MODEL}"}, 400, "budget", "model name says 16"),
    ({**chat(), "model": f"mcts-4/{MODEL}"}, 400, "model", "unknown method `mcts`"),
    ({**chat(), "model": "gpt-4o"}, 404, "model", "does not exist"),
    ({**chat(), "model": None}, 400, "model", "'model' is required"),
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "JSON object"),
])
def test_bad_requests_are_refused_naming_the_field(body, status, param, words):
    with pytest.raises(RequestError) as refused:
        parse(body)
    assert refused.value.status == status
    assert refused.value.param == param
    assert words in refused.value.message
    assert refused.value.body()["error"]["param"] == param


def test_completions_take_one_prompt():
    assert parse({"model": MODEL, "prompt": [PROBLEM]}, "completion").problem == PROBLEM
    for prompt in ([PROBLEM, PROBLEM], [1, 2, 3], None, " "):
        with pytest.raises(RequestError) as refused:
            parse({"model": MODEL, "prompt": prompt}, "completion")
        assert refused.value.param == "prompt"


# -- ranking n solutions -------------------------------------------------------------------
def candidate(node, text, scores=(0.5,)):
    return Candidate(node, (Step(text),), scores, "stop")


def test_the_chosen_solution_comes_first_then_the_others_by_score_each_text_once():
    candidates = [candidate(1, "a \\boxed{1}", (0.9,)), candidate(2, "b \\boxed{2}", (0.2,)),
                  candidate(3, "c \\boxed{3}", (0.7,)), candidate(4, "a \\boxed{1}", (0.9,))]
    scores = [0.9, 0.2, 0.7, 0.9]
    ranked = _ranked(candidates, 2, scores, keep=3)
    assert [s.steps[0] for s in ranked] == ["c \\boxed{3}", "a \\boxed{1}", "b \\boxed{2}"]
    assert [s.score for s in ranked] == [0.7, 0.9, 0.2]
    assert len(_ranked(candidates, 0, scores, keep=10)) == 3  # the duplicate text once
    unscored = [Candidate(i, (Step(f"s{i} \\boxed{{{a}}}"),), None, "stop")
                for i, a in enumerate([5, 6, 6, 7])]
    order = [s.answer for s in _ranked(unscored, 1, [0.0] * 4, keep=4)]
    assert order == ["6", "6", "5", "7"]  # the most common answer's solutions first


# -- admission -----------------------------------------------------------------------------
def test_the_gate_runs_at_most_its_slots_refuses_past_its_queue_and_frees_cancelled_waiters():
    async def scenario():
        gate = AdmissionGate(max_running=2, max_waiting=1)
        release = asyncio.Event()
        peak = 0

        async def work():
            nonlocal peak
            peak = max(peak, gate.running)
            await release.wait()
            return "done"

        tasks = [asyncio.create_task(gate.run(work)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert (gate.running, gate.waiting) == (2, 1)
        with pytest.raises(RequestError) as refused:
            await gate.run(work)
        assert refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 1
        tasks[2].cancel()  # a waiter whose client left gives its place back
        await asyncio.sleep(0.01)
        assert gate.waiting == 0
        extra = asyncio.create_task(gate.run(work))
        await asyncio.sleep(0.01)
        assert gate.waiting == 1
        release.set()
        results = await asyncio.gather(*tasks[:2], extra)
        assert results == ["done"] * 3 and peak == 2
        assert (gate.running, gate.waiting) == (0, 0)
        assert 1 <= gate.retry_after() <= 60

    asyncio.run(scenario())


def test_the_gate_queues_a_burst_but_refuses_a_wait_past_the_timeout():
    """On the gate's own clock: a request that would only time out in the queue is refused
    with the wait it would face; while the queue drains fast enough, it is queued."""
    async def scenario():
        now = [0.0]
        gate = AdmissionGate(max_running=2, max_waiting=100, timeout_s=10, clock=lambda: now[0])
        assert gate.expected_wait() is None  # nothing measured yet: queued
        release = asyncio.Event()

        async def work(seconds):
            await release.wait()
            now[0] += seconds  # the search took this long on the gate's clock
            return seconds

        # one search of 4 s measured: with 2 slots, one frees up every 2 s
        await asyncio.gather(gate.run(lambda: work(4.0)), _released(release))
        release.clear()
        held = [asyncio.create_task(gate.run(lambda: work(4.0))) for _ in range(2)]
        queued = [asyncio.create_task(gate.run(lambda: work(4.0))) for _ in range(4)]
        await asyncio.sleep(0.01)
        assert (gate.running, gate.waiting) == (2, 4)
        assert gate.expected_wait() == pytest.approx(4.0 * 5 / 2)  # 10 s: still within
        for _ in range(3):
            queued.append(asyncio.create_task(gate.run(lambda: work(4.0))))
            await asyncio.sleep(0.01)
        refused = [t for t in queued if t.done()]
        assert len(refused) == 2  # the 5th waiter waits 10 s; a 6th would wait 12 s
        for task in refused:
            with pytest.raises(RequestError) as caught:
                task.result()
            assert caught.value.status == 429 and "past the 10s" in caught.value.message
            assert int(caught.value.headers["Retry-After"]) == 12
        assert gate.waiting == 5
        release.set()
        await asyncio.gather(*held, *(t for t in queued if not t.done()))
        assert (gate.running, gate.waiting) == (0, 0)

    asyncio.run(scenario())


async def _released(event: asyncio.Event) -> None:
    await asyncio.sleep(0)
    event.set()


# -- a real server -------------------------------------------------------------------------
# A search on the real model takes seconds here and minutes on a slow, busy machine (queued
# behind others, longer still): these limits only stop a request that would never end.
SEARCH_LIMIT_S = 1800


def serve_command(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ttscale.cli.main", "serve", "--port", str(port),
            "--threads", "2", "--n-ctx", "8192", "--max-step-tokens", "24",
            "--max-depth", "4", "--max-tokens", "48", "--budget", "2", "--width", "2",
            "--log-level", "warning", *extra]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL (…/v1) of ``ttscale serve`` on the embedded model, with an API key."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    command = serve_command(port, "--api-key", KEY, "--max-running", "4",
                            "--max-waiting", "16", "--request-timeout", str(SEARCH_LIMIT_S))
    with running_server(command, f"http://127.0.0.1:{port}/health", log):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key=KEY, max_retries=0, timeout=SEARCH_LIMIT_S)


def post(url: str, body: bytes, key: str | None = KEY, timeout: float = SEARCH_LIMIT_S):
    """(status, headers, parsed body) of a raw POST, errors included."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def raw_status(server: str, request_line: bytes, length: int) -> int:
    """The status a server answers to a body of ``length`` bytes, of which it is sent only
    the start: a server that refuses on Content-Length answers before the rest would come
    (sending all of it could race its closing the connection)."""
    port = int(server.removesuffix("/v1").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_line + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nAuthorization: Bearer " + KEY.encode() + b"\r\nContent-Length: "
                     + str(length).encode() + b"\r\n\r\n{" + b" " * 1024)
        reply = sock.recv(4096)
    return int(reply.split(b" ", 2)[1])


def get(url: str, key: str | None = KEY):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key
                                     else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.mark.slow
def test_chat_answers_with_the_chosen_solution_and_counts_what_the_search_spent(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": PROBLEM}],
        extra_body={"method": "bon", "budget": 4})
    assert reply.model == MODEL and reply.object == "chat.completion"
    content = reply.choices[0].message.content
    assert content and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    extra = reply.model_extra["ttscale"]
    assert (extra["method"], extra["requested_method"], extra["budget"]) == ("bon", "bon", 4)
    assert extra["width"] is None and extra["prm"] == "confidence"
    assert extra["candidates"] == 4
    assert extra["answer"] == extract_answer(content.split("\n")[-1]) or extra["answer"] is None
    ledger = extra["ledger"]
    policy = ledger["policy_tokens"]
    assert reply.usage.completion_tokens == policy["generated"] > 0
    assert reply.usage.prompt_tokens == policy["prompt"] > 0
    assert reply.usage.total_tokens == policy["prompt"] + policy["generated"]
    assert reply.usage.prompt_tokens_details.cached_tokens == policy["cached_prompt"]
    computed = policy["prompt"] - policy["cached_prompt"] + policy["generated"]
    assert extra["flops"]["policy"] == pytest.approx(2 * ledger["policy_parameters"] * computed)
    assert extra["flops"]["total"] == extra["flops"]["policy"] + extra["flops"]["scorer"]


@pytest.mark.slow
def test_completions_and_the_model_prefix_choose_the_search(client):
    reply = client.completions.create(model=f"beam-4x2/{MODEL}", prompt=PROBLEM)
    assert reply.object == "text_completion" and reply.choices[0].text
    extra = reply.model_extra["ttscale"]
    assert (extra["method"], extra["budget"], extra["width"]) == ("beam", 4, 2)
    dvts = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROBLEM}],
        extra_body={"method": "dvts", "budget": 4, "width": 2, "prm": "arith"})
    assert dvts.model_extra["ttscale"]["method"] == "dvts"
    assert dvts.model_extra["ttscale"]["prm"] == "arithmetic"  # loaded on first use


def test_auto_reports_what_the_planner_chose(client):
    reply = client.chat.completions.create(model=f"auto-4/{MODEL}",
                                           messages=[{"role": "user", "content": PROBLEM}])
    extra = reply.model_extra["ttscale"]
    assert extra["requested_method"] == "auto"
    assert extra["method"] in ("bon", "beam", "dvts", "majority")
    assert extra["method"] == extra["plan"]["method"]
    assert extra["plan"]["predicted_bin"] in ("easy", "medium", "hard")


def test_n_returns_the_best_distinct_solutions(client):
    reply = client.chat.completions.create(
        model=f"bon-4/{MODEL}", n=3, temperature=1.0,
        messages=[{"role": "user", "content": PROBLEM}])
    texts = [c.message.content for c in reply.choices]
    assert [c.index for c in reply.choices] == list(range(len(texts)))
    assert 1 <= len(texts) <= 3 and len(set(texts)) == len(texts)
    chosen = reply.choices[0].model_extra["ttscale"]
    assert chosen["answer"] == reply.model_extra["ttscale"]["answer"]


def test_streaming_sends_the_answer_in_standard_chunks(client):
    stream = client.chat.completions.create(
        model=f"bon-2/{MODEL}", messages=[{"role": "user", "content": PROBLEM}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text.strip()
    assert with_choices[-1].choices[0].finish_reason in ("stop", "length")
    extra = with_choices[-1].model_extra["ttscale"]
    if extra["answer"] is not None:
        assert extract_answer(text.split("\n")[-1]) == extra["answer"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert chunks[-1].usage.completion_tokens == extra["ledger"]["policy_tokens"]["generated"]
    completion_stream = client.completions.create(model=f"bon-2/{MODEL}", prompt=PROBLEM,
                                                  stream=True)
    pieces = [c.choices[0].text for c in completion_stream if c.choices]
    assert "".join(pieces).strip()


def test_the_api_key_is_required_where_set(server):
    wrong = openai.OpenAI(base_url=server, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.chat.completions.create(model=MODEL, messages=[{"role": "user",
                                                              "content": PROBLEM}])
    assert refused.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    status, _, body = post(f"{server}/chat/completions", json.dumps(chat()).encode(), key=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    root = server.removesuffix("/v1")
    assert json.loads(get(f"{root}/health", key=None))["status"] == "ok"  # open, for probes
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(f"{root}/metrics", key=None)
    assert refused.value.code == 401


def test_bad_requests_get_openai_errors_with_their_status(client, server):
    def refused(error_type, **fields):
        with pytest.raises(error_type) as caught:
            client.chat.completions.create(**{"model": MODEL, "messages": [
                {"role": "user", "content": PROBLEM}], **fields})
        return caught.value

    missing = refused(openai.BadRequestError, messages=[])
    assert missing.status_code == 400 and missing.body["param"] == "messages"
    too_large = refused(openai.BadRequestError, extra_body={"budget": 10_000})
    assert too_large.body["param"] == "budget" and "--max-budget" in too_large.body["message"]
    unknown = refused(openai.BadRequestError, extra_body={"method": "mcts"})
    assert unknown.body["param"] == "method"
    assert refused(openai.NotFoundError, model="gpt-4o").status_code == 404
    not_loaded = refused(openai.BadRequestError, extra_body={"prm": "qwen-prm:/nowhere"})
    assert "--prm qwen-prm:/nowhere" in not_loaded.body["message"]
    status, _, body = post(f"{server}/chat/completions", b'{"model": "x", "messages": [')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    assert raw_status(server, b"POST /v1/chat/completions", 2**21) == 413
    status, _, body = post(f"{server}/nowhere", b"{}")
    assert status == 404 and body["error"]["message"]


def test_models_health_and_metrics(client, server):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == MODEL and f"beam-2/{MODEL}" in ids and f"greedy/{MODEL}" in ids
    assert client.models.retrieve(f"beam-2/{MODEL}").id == f"beam-2/{MODEL}"
    root = server.removesuffix("/v1")
    before = get(f"{root}/metrics")
    reply = client.chat.completions.create(model=f"bon-2/{MODEL}",
                                           messages=[{"role": "user", "content": PROBLEM}])
    after = get(f"{root}/metrics")
    name = "ttscale_requests_total"
    assert metric(after, name, endpoint="chat", status="200") == \
        metric(before, name, endpoint="chat", status="200") + 1
    generated = reply.model_extra["ttscale"]["ledger"]["policy_tokens"]["generated"]
    assert metric(after, "ttscale_tokens_total", model="policy", kind="generated") - \
        metric(before, "ttscale_tokens_total", model="policy", kind="generated") == generated
    flops = reply.model_extra["ttscale"]["flops"]["policy"]
    assert metric(after, "ttscale_flops_total", model="policy") - \
        metric(before, "ttscale_flops_total", model="policy") == pytest.approx(flops)
    assert metric(after, "ttscale_request_latency_seconds_count", endpoint="chat") >= 1
    assert metric(after, "ttscale_queue_depth") == 0
    assert "ttscale_searches_running" in after


def health(server) -> dict:
    return json.loads(get(f"{server.removesuffix('/v1')}/health", key=None))


def wait_for(condition, limit_s: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit_s:
            pytest.fail(f"{what} did not happen within {limit_s} s")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.slow
def test_readme_example_works_as_written(server, capsys):
    text = README.read_text()
    block = re.search(r"```python\n(from openai import OpenAI\n.*?)```", text, re.S)
    assert block, "the README has no openai client example"
    code = block.group(1)
    assert len(code.strip().splitlines()) == 3
    code = code.replace("http://127.0.0.1:8000/v1", server).replace('api_key="none"',
                                                                     f'api_key="{KEY}"')
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_load_200_requests_from_50_clients_are_all_answered_or_refused(server):
    result = asyncio.run(run_load(server, MODEL, requests=200, clients=50, api_key=KEY,
                                  budget=2, max_tokens=16, timeout_s=SEARCH_LIMIT_S,
                                  retries=3))
    summary = result.summary()
    print("load test:", json.dumps(summary))
    assert sum(result.statuses.values()) == 200  # every request ended: none lost or hung
    assert set(result.statuses) <= {"200", "429"}, result.statuses
    assert result.statuses.get("200", 0) >= 20  # 4 running + 16 waiting at the start alone
    assert result.refusals > 0  # 50 clients against 20 places: the queue stays bounded
    assert all(seconds >= 1 for seconds in result.retry_after_s)
    assert result.health_checks > 0 and result.health_failures == 0
    assert health(server) == {"status": "ok", "running": 0, "waiting": 0}


# -- cancellation and limits, on a server whose searches take as long as the test says ------
STALL = "Think about it for ever."
# What these tests wait for happens at once on any machine; only a broken server gets here.
GIVE_UP_S = 60
REQUEST_TIMEOUT_S = 5  # the other searches answer within a fifth of a second, busy or not


class StallingPolicy(ScriptedPolicy):
    """Answers every call at once, except for a problem that says ``STALL``: its search waits
    in the engine until it is cancelled. A slow search is slow, and a fast one fast, on any
    machine."""

    batches_across_calls = True  # each search's calls on their own, as llama.cpp takes them

    def __init__(self) -> None:
        super().__init__(lambda prefix, j, stop: ("3 + 4 = 7, so he has \\boxed{7}.", "eos"))
        self.stalled = threading.Event()  # a stalled search reached the engine
        self.cancelled = threading.Event()  # and was cancelled there

    async def extend(self, prefixes, n, *args, **kwargs):
        if any(STALL in prefix for prefix in prefixes):
            self.stalled.set()
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return await super().extend(prefixes, n, *args, **kwargs)


@contextlib.contextmanager
def stalling_server(**config) -> Iterator[tuple[str, StallingPolicy]]:
    """Base URL (…/v1) of the server's app, run in this process on a ``StallingPolicy``, and
    the policy."""
    policy = StallingPolicy()
    service = load_service(engine=policy, prm=["confidence"], prompt=PromptFormat(),
                           config=ServerConfig(served_model_name=MODEL, **config))
    with serving_in_thread(create_app(service)) as root:
        yield f"{root}/v1", policy


STALLED = json.dumps(chat(method="bon", budget=2, messages=[
    {"role": "user", "content": f"{PROBLEM} {STALL}"}])).encode()


@contextlib.contextmanager
def sent_then_dropped(server: str, body: bytes) -> Iterator[None]:
    """A chat request sent on a connection that is closed on exit, its answer unread: a client
    that goes away."""
    port = int(server.removesuffix("/v1").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        yield


def test_a_client_that_disconnects_cancels_its_search():
    with stalling_server() as (server, policy):
        with sent_then_dropped(server, STALLED):
            assert policy.stalled.wait(GIVE_UP_S), "the search did not reach the engine"
            assert health(server)["running"] == 1
        # the search cannot end by itself: only its cancellation frees the slot
        wait_for(lambda: health(server)["running"] == 0, GIVE_UP_S, "the search ending")
        assert policy.cancelled.is_set()
        metrics = get(f"{server.removesuffix('/v1')}/metrics", key=None)
        assert metric(metrics, "ttscale_searches_total", outcome="cancelled") == 1


def test_a_full_server_refuses_with_retry_after():
    with stalling_server(max_running=1, max_waiting=0) as (server, policy):
        with sent_then_dropped(server, STALLED):  # holds the one slot until it goes away
            assert policy.stalled.wait(GIVE_UP_S), "the search did not reach the engine"
            status, headers, body = post(f"{server}/chat/completions",
                                         json.dumps(chat(budget=2)).encode(), key=None)
        assert status == 429 and body["error"]["type"] == "rate_limit_error"
        assert int(headers["Retry-After"]) >= 1


def test_a_slow_search_times_out_and_the_server_goes_on():
    with stalling_server(max_running=1, max_waiting=0,
                         request_timeout_s=REQUEST_TIMEOUT_S) as (server, policy):
        start = time.monotonic()
        status, _, body = post(f"{server}/chat/completions", STALLED, key=None,
                               timeout=GIVE_UP_S)
        assert status == 504 and body["error"]["type"] == "timeout_error"
        assert time.monotonic() - start >= REQUEST_TIMEOUT_S
        assert policy.cancelled.is_set()  # the search stopped with its request
        wait_for(lambda: health(server)["running"] == 0, GIVE_UP_S, "the slot being freed")
        with contextlib.closing(openai.OpenAI(base_url=server, api_key="none", max_retries=0,
                                              timeout=GIVE_UP_S)) as anyone:
            reply = anyone.chat.completions.create(
                model=f"bon-2/{MODEL}", messages=[{"role": "user", "content": PROBLEM}])
        assert reply.choices[0].message.content  # the server goes on after a timeout
