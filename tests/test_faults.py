"""Faults between ttscale and a real server: the fault proxy (``fault_proxy.py``, its own
process) in front of llama-cpp-python's server on the embedded model breaks the requests of one
problem of a run the ways networks and servers break. For every fault: what is retryable is
retried; what does not clear within the retries fails that problem with one line naming the
server and the cause; the other problems' records are kept; a rerun once the fault is gone
completes the run with every record exactly once.

Timing is only bounded from below (a retry waits at least the server's Retry-After) or made
long enough to trip by construction (a stall of an hour against a two-second deadline)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability_log import log_case
from server_process import embedded_llama_server, free_port, running_server
from ttscale.datasets import load_dataset
from ttscale.engines.openai_http import OpenAICompletionsEngine
from ttscale.prompts import PromptFormat
from ttscale.records import read_records
from ttscale.run.runner import DatasetSelection, RunConfig, RunOutcome, run
from ttscale.settings import SearchSettings

PROXY = Path(__file__).with_name("fault_proxy.py")
PROBLEMS = 3
# One attempt, whole: far above what an answer of 24 tokens from the 135M model takes on a slow,
# busy machine, far below what the stalls and drips below take.
DEADLINE_S = 30
CONFIG = RunConfig(dataset=DatasetSelection("gsm8k", limit=PROBLEMS), methods=("majority",),
                   budgets=(2,), scorer="confidence",
                   settings=SearchSettings(max_solution_tokens=24))


class Faults:
    """The proxy's control: rules for the next requests, and what each request met."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.root}/_proxy/{path}", data=data,
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def add(self, kind: str, match: str = "", times: int = -1, **params) -> None:
        self._call("POST", "faults", {"kind": kind, "match": match, "times": times, **params})

    def clear(self) -> None:
        self._call("DELETE", "faults")

    def log(self) -> list[dict]:
        return self._call("GET", "log")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[tuple[Faults, str]]:
    """(control, base URL through the proxy) in front of a real llama.cpp server."""
    logs = tmp_path_factory.mktemp("faults")
    with embedded_llama_server(logs) as upstream:
        port = free_port()
        root = f"http://127.0.0.1:{port}"
        upstream_host = upstream.removeprefix("http://").removesuffix("/v1")
        command = [sys.executable, str(PROXY), "--upstream", upstream_host, "--port", str(port)]
        with running_server(command, f"{root}/_proxy/log", logs / "proxy.log"):
            # the first decode after start-up is the slowest: paid here, not in a test
            engine = OpenAICompletionsEngine(upstream, timeout=600, max_retries=0)
            asyncio.run(engine.extend(["Hi"], 1, [], 1, 0.0, 1.0, 0))
            yield Faults(root), f"{root}/v1"


@pytest.fixture()
def faults(proxy) -> Iterator[Faults]:
    control, _ = proxy
    control.clear()
    yield control
    control.clear()


def _engine(base_url: str, retries: int = 1) -> OpenAICompletionsEngine:
    return OpenAICompletionsEngine(base_url, timeout=DEADLINE_S, max_retries=retries,
                                   extra_body={"repeat_penalty": 1.0})


def _run(base_url: str, out: Path, retries: int = 1,
         engine: OpenAICompletionsEngine | None = None) -> RunOutcome:
    engine = engine or _engine(base_url, retries)

    async def go() -> RunOutcome:
        try:
            return await run(CONFIG, engine, None, out, PromptFormat(), parallel=1)
        finally:
            await engine.close()

    return asyncio.run(go())


def _keys(folder: Path) -> list[str]:
    """The keys of a run's records, in the order written; asserts that none is there twice."""
    keys = [r["key"] for r in read_records(folder / "records.jsonl").records]
    assert len(keys) == len(set(keys)), f"a record written twice: {keys}"
    return keys


@pytest.fixture(scope="module")
def clean(proxy, tmp_path_factory) -> list[str]:
    """The keys of the run with no fault: what every faulted run must end with. (Not the
    texts: the server reuses whatever prefix its KV cache holds from the request before, its
    sums round differently for each, and a sample at temperature 0.8 can differ between runs.)"""
    _, base_url = proxy
    out = tmp_path_factory.mktemp("clean")
    assert not _run(base_url, out).failures
    return sorted(_keys(out))


@pytest.fixture(scope="module")
def target() -> str:
    """Text that only the second problem's requests carry (a run of its words, as JSON
    writes them in the request body)."""
    problem = load_dataset("gsm8k", limit=PROBLEMS).problems[1]
    return json.dumps(" ".join(problem.problem.split()[:6]))[1:-1]


def _case(kind: str, params: dict) -> str:
    """A fault, in the words of the reliability table."""
    if kind == "status":
        after = params.get("retry_after")
        return f"HTTP {params['status']}" + (f", Retry-After {after} s" if after else "")
    return {"reset": "connection reset mid-response",
            "stall": f"no answer for {params.get('seconds')} s",
            "drip": f"answer dripped, {params.get('bytes')} bytes every {params.get('interval')} s",
            "truncate": "JSON cut off", "malformed": "a body that is not JSON",
            "nan": f"{params.get('value')} in the numbers"}.get(kind, kind)


def _ids(cases) -> list[str]:
    values = [case.values if hasattr(case, "values") else case for case in cases]
    return [f"{v[0]}-{'-'.join(map(str, v[1].values()))}" for v in values]


def _assert_fails_then_completes(base_url, faults, target, tmp_path, clean, cause, case):
    """The faulted problem fails with one line naming the server and ``cause``; the others
    keep their records; a rerun once the fault is cleared completes the run."""
    out = tmp_path / "run"
    outcome = _run(base_url, out)
    [failure] = outcome.failures
    second = load_dataset("gsm8k", limit=PROBLEMS).problems[1]
    assert failure.problem_id == second.id
    assert "\n" not in failure.message and base_url.removesuffix("/v1") in failure.message
    assert cause in failure.message, failure.message
    assert sorted(_keys(out)) == [key for key in clean if not key.startswith(second.id + "|")]
    # the failure is on disk, apart from the records: failed, not wrong
    [logged] = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert logged["problem_id"] == second.id and logged["error"] == failure.message
    written = (out / "records.jsonl").read_bytes()
    faults.clear()
    assert not _run(base_url, out).failures
    assert sorted(_keys(out)) == clean
    # the rerun added the failed problem's records and left the others as they were
    assert (out / "records.jsonl").read_bytes().startswith(written)
    log_case("policy server (lasting fault)", case, lost=0, duplicated=0, crashes=0,
             result=f"problem failed: {cause}; rerun complete")


# (fault, its parameters, what the one-line error says) for faults that outlast the retries
TIMED_OUT = f"timed out (no complete answer within {DEADLINE_S}s, after 1 retry)"
LASTING = [
    ("status", {"status": 500}, "kept failing (HTTP 500, after 1 retry)"),
    ("status", {"status": 503}, "kept failing (HTTP 503, after 1 retry)"),
    ("status", {"status": 429}, "kept failing (HTTP 429, after 1 retry)"),
    ("status", {"status": 429, "retry_after": 1}, "kept failing (HTTP 429, after 1 retry)"),
    ("reset", {}, "failed mid-request (after 1 retry)"),
    pytest.param("stall", {"seconds": 3600}, TIMED_OUT, marks=pytest.mark.slow),
    # an answer of about 1.5 kB, 4 bytes a second: each read is quick, the whole takes minutes
    pytest.param("drip", {"bytes": 4, "interval": 1.0}, TIMED_OUT, marks=pytest.mark.slow),
    ("truncate", {}, "not JSON (after 1 retry)"),
    ("malformed", {}, "not JSON (after 1 retry)"),
    ("nan", {"value": "NaN"}, "the log-prob nan"),
    ("nan", {"value": "Infinity"}, "the log-prob inf"),
]


@pytest.mark.parametrize(("kind", "params", "cause"), LASTING, ids=_ids(LASTING))
def test_a_lasting_fault_fails_its_problem_alone(proxy, faults, target, clean, tmp_path,
                                                 kind, params, cause):
    _, base_url = proxy
    faults.add(kind, match=target, **params)
    _assert_fails_then_completes(base_url, faults, target, tmp_path, clean, cause,
                                 _case(kind, params))


TRANSIENT = [("status", {"status": 503}), ("status", {"status": 429, "retry_after": 1}),
             ("reset", {}), pytest.param("stall", {"seconds": 3600}, marks=pytest.mark.slow),
             ("truncate", {}), ("malformed", {})]


@pytest.mark.parametrize(("kind", "params"), TRANSIENT, ids=_ids(TRANSIENT))
def test_a_fault_that_clears_within_the_retries_leaves_no_trace(proxy, faults, target, clean,
                                                                 tmp_path, kind, params):
    _, base_url = proxy
    faults.add(kind, match=target, times=1, **params)
    out = tmp_path / "run"
    assert not _run(base_url, out).failures
    assert sorted(_keys(out)) == clean
    met = [entry for entry in faults.log() if entry["fault"] == kind]
    assert len(met) == 1
    if "retry_after" in params:  # the retry waited for what the server asked
        later = [e for e in faults.log() if e["body"] == met[0]["body"]
                 and e["time"] > met[0]["time"]]
        assert later and later[0]["time"] - met[0]["time"] >= params["retry_after"]
    log_case("policy server (fault that clears)", _case(kind, params), lost=0, duplicated=0,
             crashes=0, result="retried; run complete")


def test_refused_connections_are_retried_and_then_reported(proxy, faults, clean, tmp_path):
    control, base_url = proxy
    out = tmp_path / "run"
    # Refused for longer than one retry waits: every problem fails, naming the server. (The
    # engine has met the server before: one that cannot be reached at the start of a run
    # stops the run at once, before any problem.)
    engine = _engine(base_url, retries=1)
    assert engine.info.parameters == 135_000_000
    control.add("refuse", seconds=20)  # far longer than three problems' refused attempts
    time.sleep(0.2)
    outcome = _run(base_url, out, engine=engine)
    assert len(outcome.failures) == PROBLEMS
    for failure in outcome.failures:
        assert "cannot reach the OpenAI-compatible server at" in failure.message
        assert "ConnectionRefusedError" in failure.message
        assert "after 1 retry" in failure.message
    deadline = time.monotonic() + 60
    while True:  # the proxy listens again after its 20 s
        try:
            control.log()
            break
        except OSError:
            assert time.monotonic() < deadline, "the proxy did not listen again"
            time.sleep(0.2)
    # refused for less than the retries wait (0.5 + 1 + 2 s of backoff, less jitter)
    engine = _engine(base_url, retries=3)
    assert engine.info.parameters == 135_000_000
    control.add("refuse", seconds=1)
    time.sleep(0.2)
    assert not _run(base_url, out, engine=engine).failures
    assert sorted(_keys(out)) == clean
    log_case("policy server (lasting fault)", "refused connections", cases=PROBLEMS, lost=0,
             duplicated=0, crashes=0, result="every problem failed: cannot reach; rerun complete")
    log_case("policy server (fault that clears)", "refused connections", lost=0, duplicated=0,
             crashes=0, result="retried; run complete")


# -- the PRM client against `ttscale prm serve` ---------------------------------------------
STEPS = ["Step 1: 16 - 3 - 4 = 9 eggs are left.", "Step 2: 9 * 2 = 18 dollars.",
         "The answer is \\boxed{18}."]
PRM_PROBLEM = "Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest for $2 each."


@pytest.fixture(scope="module")
def prm_proxy(tmp_path_factory) -> Iterator[tuple[Faults, str]]:
    """(control, root URL through the proxy) in front of ttscale's own PRM server on a tiny
    random Qwen2.5-Math-PRM."""
    pytest.importorskip("torch")
    pytest.importorskip("fastapi")
    from prm_assets import build_checkpoints

    logs = tmp_path_factory.mktemp("prm-faults")
    checkpoint = build_checkpoints(tmp_path_factory.mktemp("prms"))["qwen-prm"]
    port, proxy_port = free_port(), free_port()
    server = [sys.executable, "-m", "ttscale.serve.prm_app", "--prm", f"qwen-prm:{checkpoint}",
              "--port", str(port), "--threads", "1", "--log-level", "warning"]
    proxy = [sys.executable, str(PROXY), "--upstream", f"127.0.0.1:{port}",
             "--port", str(proxy_port)]
    root = f"http://127.0.0.1:{proxy_port}"
    with running_server(server, f"http://127.0.0.1:{port}/health", logs / "prm.log",
                        env={"TRANSFORMERS_OFFLINE": "1"}), \
            running_server(proxy, f"{root}/_proxy/log", logs / "proxy.log"):
        yield Faults(root), root


def _score(root: str, retries: int = 1):
    from ttscale.rewards.http_prm import HTTPProcessRewardModel
    from ttscale.steps import Step

    remote = HTTPProcessRewardModel(root, format="qwen-prm", timeout=DEADLINE_S,
                                    max_retries=retries)

    async def go():
        try:
            return await remote.score(PRM_PROBLEM, [[Step(t) for t in STEPS]])
        finally:
            await remote.close()

    return asyncio.run(go())


PRM_LASTING = [
    ("status", {"status": 503}, "kept failing (HTTP 503, after 1 retry)", "Retryable"),
    ("status", {"status": 429, "retry_after": 1}, "kept failing (HTTP 429, after 1 retry)",
     "Retryable"),
    ("reset", {}, "failed mid-request (after 1 retry)", "Retryable"),
    pytest.param("stall", {"seconds": 3600}, f"did not answer within {DEADLINE_S}s (after 1 retry)",
                 "Retryable", marks=pytest.mark.slow),
    ("truncate", {}, "the body is not JSON", "EngineError"),
    ("malformed", {}, "the body is not JSON", "EngineError"),
    ("nan", {"value": "NaN"}, "step score nan for step 0 of input 0: not a number",
     "EngineError"),
]


@pytest.mark.parametrize(("kind", "params", "cause", "error"), PRM_LASTING,
                         ids=_ids(PRM_LASTING))
def test_the_prm_client_reports_a_lasting_fault_in_one_line(prm_proxy, kind, params, cause,
                                                            error):
    control, root = prm_proxy
    control.clear()
    clean = _score(root).scores
    control.clear()  # the log from here on
    control.add(kind, match="Janet", **params)
    with pytest.raises(Exception) as caught:
        _score(root)
    message = str(caught.value)
    assert type(caught.value).__name__.startswith(error)
    assert f"the PRM server at {root}" in message and cause in message and "\n" not in message
    assert [e["fault"] for e in control.log() if e["path"] == "/pooling"] == [kind] * (
        1 if kind == "nan" else 2)  # a NaN is no transient fault: not retried
    control.clear()
    assert _score(root).scores == clean
    log_case("PRM server (lasting fault)", _case(kind, params), crashes=0,
             result=f"{type(caught.value).__name__}: {cause}")


@pytest.mark.parametrize(("kind", "params"), TRANSIENT, ids=_ids(TRANSIENT))
def test_the_prm_client_rides_out_a_fault_that_clears(prm_proxy, kind, params):
    control, root = prm_proxy
    control.clear()
    clean = _score(root).scores
    control.clear()  # the log from here on
    control.add(kind, match="Janet", times=1, **params)
    assert _score(root).scores == clean
    assert [e["fault"] for e in control.log() if e["path"] == "/pooling"] == [kind, None]
    control.clear()
    log_case("PRM server (fault that clears)", _case(kind, params), crashes=0,
             result="retried; same scores")
