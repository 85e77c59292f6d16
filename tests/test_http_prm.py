"""A PRM served over HTTP: ttscale's own PRM server on tiny checkpoints of both step-tag
formats, checked against the same PRM in-process; and the client's one-line errors against
local servers that are down, silent or answer wrongly (real sockets throughout)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from prm_assets import build_checkpoints, recorded_step_texts  # noqa: E402
from server_process import free_port, running_server  # noqa: E402
from ttscale.errors import (  # noqa: E402
    ContextLengthError,
    EngineError,
    ModelLoadError,
    RetryableEngineError,
)
from ttscale.rewards import math_shepherd, qwen_prm  # noqa: E402
from ttscale.rewards.http_prm import HTTPProcessRewardModel  # noqa: E402
from ttscale.rewards.math_shepherd import MathShepherdPRM  # noqa: E402
from ttscale.rewards.qwen_prm import QwenMathPRM  # noqa: E402
from ttscale.steps import Step  # noqa: E402

PROBLEM = "Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest for $2 each."
STEPS = ["Step 1: 16 - 3 - 4 = 9 eggs are left.",
         "Step 2: 9 * 2 = 18 dollars.",
         "The answer is \\boxed{18}."]
SOLUTIONS = [STEPS, STEPS[:1], ["Step 1: 16 - 7 = 9.", "Step 2: 9 + 9 = 18, more words."], [],
             ["Step 1: 9 eggs.", "Step 2: 18.", "Step 3: 18 dollars.", "Done: \\boxed{18}."]]
FORMATS = ["qwen-prm", "math-shepherd"]
KEY = "test-key-123"  # the math-shepherd server requires it


def steps_of(texts):
    return [Step(t) for t in texts]


def score(scorer, solutions, problem=PROBLEM):
    async def run():
        try:
            return await scorer.score(problem, [steps_of(s) for s in solutions])
        finally:
            if isinstance(scorer, HTTPProcessRewardModel):
                await scorer.close()  # its connections belong to this event loop

    return asyncio.run(run())


@pytest.fixture(autouse=True)
def no_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("TTSCALE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.set_num_threads(1)
    return build_checkpoints(tmp_path_factory.mktemp("prms"))


@pytest.fixture(scope="module")
def servers(checkpoints, tmp_path_factory):
    """Both formats served by ``python -m ttscale.serve.prm_app``."""
    logs = tmp_path_factory.mktemp("server-logs")
    urls = {}
    with contextlib.ExitStack() as stack:
        for name in FORMATS:
            port = free_port()
            command = [sys.executable, "-m", "ttscale.serve.prm_app", "--prm",
                       f"{name}:{checkpoints[name]}", "--port", str(port), "--threads", "1",
                       "--log-level", "warning", "--max-body-bytes", str(64 * 1024)]
            if name == "math-shepherd":
                command += ["--api-key", KEY]
            urls[name] = f"http://127.0.0.1:{port}"
            stack.enter_context(running_server(command, f"{urls[name]}/health",
                                               logs / f"{name}.log",
                                               env={"TRANSFORMERS_OFFLINE": "1"}))
        yield urls


@pytest.fixture(scope="module")
def in_process(checkpoints):
    return {"qwen-prm": QwenMathPRM(checkpoints["qwen-prm"]),
            "math-shepherd": MathShepherdPRM(checkpoints["math-shepherd"])}


def client(servers, name, **kwargs):
    key = KEY if name == "math-shepherd" else None
    return HTTPProcessRewardModel(servers[name], format=name, api_key=key, **kwargs)


# -- the real server against the in-process PRM ---------------------------------------------
@pytest.mark.parametrize("name", FORMATS)
def test_served_scores_equal_in_process_scores(servers, in_process, name):
    remote, local = client(servers, name), in_process[name]
    assert remote.check() == name  # the checkpoint folder's name, as GET /v1/models lists it
    one = score(remote, [STEPS])
    expected = score(local, [STEPS])
    assert len(one.scores[0]) == 3
    assert one.scores[0] == pytest.approx(expected.scores[0], abs=1e-5)
    assert one.tokens.prompt == expected.tokens.prompt > 0
    # several solutions, an empty one among them, over several requests (batch_size=2)
    batched = score(client(servers, name, batch_size=2), SOLUTIONS)
    expected = score(local, SOLUTIONS)
    for got, want in zip(batched.scores, expected.scores, strict=True):
        assert got == pytest.approx(want, abs=1e-5)
    assert batched.scores[3] == []
    assert batched.tokens.prompt == expected.tokens.prompt


def test_a_run_scores_through_the_served_prm(servers, in_process, tmp_path):
    """`ttscale run --prm http://...` on the embedded policy: the recorded step scores are the
    PRM's own, and --prm-params puts the served PRM on the FLOPs ledger."""
    import json

    from typer.testing import CliRunner

    from ttscale.cli.main import app
    from ttscale.datasets import load_dataset

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--dataset", "gsm8k", "--limit", "1", "--method", "bon", "--n", "2",
        "--prm", servers["qwen-prm"], "--prm-format", "qwen-prm", "--prm-params", "7e9",
        "--max-step-tokens", "32", "--max-solution-tokens", "96", "--max-depth", "4",
        "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert record["scorer"] == servers["qwen-prm"]
    assert record["ledger"]["scorer_parameters"] == 7_000_000_000
    assert record["ledger"]["scorer_flops"] > 0
    problem = load_dataset("gsm8k").problems[0].problem
    for candidate in record["candidates"]:
        texts = recorded_step_texts(record, candidate)
        expected = score(in_process["qwen-prm"], [texts], problem=problem).scores[0]
        assert candidate["step_scores"] == pytest.approx(expected, abs=1e-5)


def test_base_url_with_v1_and_model_given(servers, in_process):
    remote = HTTPProcessRewardModel(servers["qwen-prm"] + "/v1/", model="qwen-prm")
    assert remote.name == f"http:qwen-prm@{servers['qwen-prm'].removeprefix('http://')}"
    assert remote.parameters is None
    assert score(remote, [STEPS]).scores[0] == pytest.approx(
        score(in_process["qwen-prm"], [STEPS]).scores[0], abs=1e-5)
    with pytest.raises(ModelLoadError, match="does not serve model 'other'; it serves qwen-prm"):
        HTTPProcessRewardModel(servers["qwen-prm"], model="other").check()
    # a name the server does not serve, sent anyway: vLLM's 404
    with pytest.raises(ModelLoadError, match="HTTP 404.*model `other` does not exist"):
        score(HTTPProcessRewardModel(servers["qwen-prm"], model="other", max_retries=0),
              [STEPS])


def test_api_key_is_required_when_set(servers):
    with pytest.raises(EngineError, match="rejected the API key \\(HTTP 401"):
        HTTPProcessRewardModel(servers["math-shepherd"], format="math-shepherd").check()
    with pytest.raises(EngineError, match="rejected the API key"):
        score(HTTPProcessRewardModel(servers["math-shepherd"], format="math-shepherd",
                                     model="math-shepherd", max_retries=0), [STEPS])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        status, body = post(servers["math-shepherd"] + "/pooling", {"input": ["a ки"]}, headers)
        assert status == 401 and "API key" in body["error"]["message"]
    status, body = post(servers["math-shepherd"] + "/pooling", {"input": ["a ки"]},
                        {"Authorization": f"Bearer {KEY}"})
    assert status == 200 and len(body["data"][0]["data"]) == 1
    with urllib.request.urlopen(servers["math-shepherd"] + "/health", timeout=5) as answer:
        assert answer.status == 200  # health needs no key, as in vLLM


def post(url, payload, headers=None, raw=None):
    data = raw if raw is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_answers_bad_bodies_with_json_errors(servers):
    url = servers["qwen-prm"] + "/pooling"
    cases = [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
             (json.dumps({"input": []}).encode(), "non-empty list of strings"),
             (json.dumps({"input": [[1, 2, 3]]}).encode(), "not token ids"),
             (json.dumps({"messages": []}).encode(), "'input' must be")]
    for raw, message in cases:
        status, body = post(url, None, raw=raw)
        assert status == 400 and message in body["error"]["message"], raw
    status, body = post(url, None, raw=b'{"input": "' + b"x" * 70_000 + b'"}')
    assert status == 413 and "over 65536 bytes" in body["error"]["message"]
    # the vLLM answer layout: per input, one [P(incorrect), P(correct)] per tag
    text = qwen_prm.prm_input(PROBLEM, STEPS)
    status, body = post(url, {"model": "qwen-prm", "input": [text, "no tag here"]})
    assert status == 200 and body["object"] == "list" and body["model"] == "qwen-prm"
    assert [item["index"] for item in body["data"]] == [0, 1]
    vectors = body["data"][0]["data"]
    assert len(vectors) == 3 and all(len(v) == 2 and abs(sum(v) - 1) < 1e-6 for v in vectors)
    assert body["data"][1]["data"] == []
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


# -- the client against local servers that misbehave ----------------------------------------
class FakePRMServer:
    """A pooling server answering as ``mode`` says; it records every request body."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.bodies: list[dict] = []
        self.unstall = threading.Event()  # set by the request after a stalled one
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                self.reply(200, {"object": "list", "data": [{"id": "fake-prm"}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                fake.answer(self, body)

            def reply(self, status, payload, content_type="application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler, body):
        texts = body["input"]
        # 0.25 at index 0 and 0.75 at index 1: the score read tells which index was taken
        tags = [text.count(qwen_prm.STEP_TAG) + text.count(math_shepherd.STEP_TAG)
                for text in texts]
        data = [{"index": i, "object": "pooling", "data": [[0.25, 0.75]] * n}
                for i, n in enumerate(tags)]
        usage = {"prompt_tokens": sum(len(t) for t in texts), "total_tokens": 0}
        mode = self.mode
        if mode == "stall-once":
            if len(self.bodies) == 1:  # silent until the client has given up and retried
                self.unstall.wait()
                return None  # its client is gone: no answer
            self.unstall.set()
        if mode == "flaky" and len(self.bodies) == 1:
            return handler.reply(503, {"error": {"message": "warming up"}})
        if mode == "reversed":
            data = data[::-1]
        elif mode == "not-json":
            return handler.reply(200, b'{"data": [', )
        elif mode == "text":
            return handler.reply(200, b"pooled!", "text/plain")
        elif mode == "per-token":
            data = [{"index": i, "data": [[0.1] * 32] * 50} for i in range(len(texts))]
        elif mode == "flat":
            data = [{"index": i, "data": [0.3, 0.7]} for i in range(len(texts))]
        elif mode == "count":
            data = [{"index": i, "data": [[0.25, 0.75]] * (n - 1)} for i, n in enumerate(tags)]
        elif mode == "range":
            data = [{"index": i, "data": [[-3.0, 2.5]] * n} for i, n in enumerate(tags)]
        elif mode == "no-usage":
            usage = {}
        elif mode == "items":
            data = data[:-1]
        elif mode.startswith("http-"):
            status = int(mode[5:])
            message = {400: "This model's maximum context length is 4096 tokens.",
                       404: "Not Found", 500: "CUDA out of memory", 422: "bad field"}[status]
            return handler.reply(status, {"error": {"message": message, "code": status}})
        handler.reply(200, {"object": "list", "model": body.get("model"), "data": data,
                            "usage": usage})

    def close(self):
        self.unstall.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake():
    server = FakePRMServer()
    yield server
    server.close()


@pytest.fixture
def fresh(fake):
    fake.mode, fake.bodies[:] = "ok", []
    fake.unstall.set()  # lets go of a request a failed test left stalled
    fake.unstall = threading.Event()
    return fake


def test_the_exact_texts_sent_and_the_index_read(fresh, in_process):
    qwen = in_process["qwen-prm"]
    remote = HTTPProcessRewardModel(fresh.url + "/v1", batch_size=2)
    problem = PROBLEM + " <extra_0>"  # a tag in the problem is removed, as in-process
    batch = score(remote, SOLUTIONS, problem=problem)
    sent = [text for body in fresh.bodies for text in body["input"]]
    assert sorted(sent) == sorted(qwen.render(PROBLEM + " ", s) for s in SOLUTIONS if s)
    assert qwen_prm.prm_input(problem, STEPS) == qwen.render(PROBLEM + " ", STEPS)
    assert {body["model"] for body in fresh.bodies} == {"fake-prm"}  # first listed model
    assert sorted(len(body["input"]) for body in fresh.bodies) == [2, 2]  # 4 sent, 2 a request
    assert batch.scores == [[0.75] * len(s) for s in SOLUTIONS]  # index 1: P(correct)
    assert batch.tokens.prompt == sum(len(t) for t in sent)

    fresh.bodies[:] = []
    shepherd = HTTPProcessRewardModel(fresh.url, format="math-shepherd", model="mine")
    batch = score(shepherd, [STEPS])
    assert fresh.bodies == [{"model": "mine", "input": [math_shepherd.prm_input(PROBLEM, STEPS)]}]
    assert batch.scores == [[0.25] * 3]  # index 0: P('+')
    fresh.mode = "reversed"  # items are placed by their index, not their order
    assert score(remote, SOLUTIONS).scores == [[0.75] * len(s) for s in SOLUTIONS]


MALFORMED = [
    ("not-json", EngineError, "malformed pooling answer .* not JSON"),
    ("text", EngineError, "expected a JSON object, got text: pooled!"),
    ("per-token", EngineError, "vectors of 32 values .*per-token.* STEP pooling.*"
                               "step_tag_id\": 12902"),
    ("flat", EngineError, "expected a list of vectors \\(STEP pooling\\)"),
    ("count", EngineError, "returned 2 step vectors for a solution of 3 steps.*step tags"),
    ("range", EngineError, "step score -3.0 outside \\[0, 1\\]: .*raw logits"),
    ("no-usage", EngineError, "no usage.prompt_tokens"),
    ("items", EngineError, "expected 'data' with 2 items, got 1 items"),
    ("http-400", ContextLengthError, "does not fit the context .*HTTP 400: This model's max"),
    ("http-404", ModelLoadError, "HTTP 404 .*Not Found; it must serve the pooling API"),
    ("http-422", EngineError, "refused the request \\(HTTP 422\\): bad field"),
    ("http-500", RetryableEngineError, "kept failing \\(HTTP 500, after 0 retries\\): CUDA out"),
]


@pytest.mark.parametrize(("mode", "error", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_wrong_answer_is_one_clear_line(fresh, mode, error, message):
    fresh.mode = mode
    remote = HTTPProcessRewardModel(fresh.url, format="math-shepherd", model="fake-prm",
                                    max_retries=0)
    with pytest.raises(error, match=message) as caught:
        score(remote, [STEPS, STEPS[:2]])
    assert "\n" not in str(caught.value)
    with pytest.raises(error):  # check() probes the pooling answer before a run
        remote.check()


def test_retries_ride_out_a_transient_failure(fresh):
    fresh.mode = "flaky"
    remote = HTTPProcessRewardModel(fresh.url, model="fake-prm", max_retries=2)
    assert score(remote, [STEPS]).scores == [[0.75] * 3]
    assert len(fresh.bodies) == 2
    # the first request is never answered, so it times out on any machine; the retry is
    # answered in milliseconds, far within the same timeout
    fresh.mode, fresh.bodies[:] = "stall-once", []
    remote = HTTPProcessRewardModel(fresh.url, model="fake-prm", timeout=2, max_retries=2)
    assert score(remote, [STEPS]).scores == [[0.75] * 3]
    assert len(fresh.bodies) == 2


def test_a_server_that_is_down_fails_fast():
    url = f"http://127.0.0.1:{free_port()}"
    remote = HTTPProcessRewardModel(url, max_retries=0)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot reach the PRM server at .*Connection"
                                             "RefusedError.*vllm serve") as caught:
        remote.check()
    # refused at once: neither retried nor waited out to check()'s own 10 s timeout
    assert time.monotonic() - started < 10 and "\n" not in str(caught.value)
    with pytest.raises(ModelLoadError, match="cannot reach the PRM server"):
        score(HTTPProcessRewardModel(url, model="m", max_retries=0), [STEPS])


def test_a_server_that_never_answers_times_out_after_retries():
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        remote = HTTPProcessRewardModel(url, model="m", timeout=0.3, max_retries=1)
        started = time.monotonic()
        with pytest.raises(RetryableEngineError,
                           match="did not answer within 0.3s \\(after 1 retry\\)"):
            score(remote, [STEPS])
        # two tries of 0.3 s and a backoff: at least that, and far from the default 120 s
        assert 0.6 <= time.monotonic() - started < 60
        with pytest.raises(RetryableEngineError, match="did not answer"):
            remote.check()
