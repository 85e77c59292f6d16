"""Property-based fuzzing of what reads untrusted input: answer extraction and grading (any
text), the JSONL dataset reader (any bytes on a line), and the server's completion routes
(bodies drawn from the OpenAPI document the server publishes, any JSON value, any bytes), sent
over HTTP to the server's app run in this process on a scripted policy.

Examples are derandomized, so a run in CI draws the same ones as a run here."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from fakes import ScriptedPolicy
from reliability_log import CALL_PASSED, log_case
from server_process import serving_in_thread
from ttscale.datasets.rows import RowError, problem_from_row
from ttscale.datasets.user_file import load_user_file
from ttscale.errors import DatasetError
from ttscale.grading import (
    answers_equivalent,
    extract_answer,
    extract_boxed,
    grade,
    normalize_answer,
)
from ttscale.prompts import PromptFormat
from ttscale.serve.app import ServerConfig, create_app, load_service
from ttscale.serve.defaults import ServerDefaults, ServerLimits

# examples each test drew (requests sent, for the server's), for benchmarks/reliability.py
TALLY: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def logged(request):
    TALLY.clear()
    yield
    if not request.node.stash.get(CALL_PASSED, False):
        return  # a failed case is pytest's to report, not a row of the table
    if "server" in request.fixturenames:
        log_case("input fuzzing: the server", request.node.name, cases=TALLY["cases"] or 1,
                 crashes=0, server_errors=0,
                 result="no 5xx; every refusal a 4xx in OpenAI's error shape")
    else:
        log_case("input fuzzing", request.node.name, cases=TALLY["cases"] or 1, crashes=0,
                 result="no crash, no hang past the time bound")


# Counts that keep the whole file near a minute on a slow, busy machine: a check of an answer
# takes microseconds, a math-verify comparison milliseconds, a request over HTTP a few.
FEW = settings(max_examples=200, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow])
MANY = settings(FEW, max_examples=1000)

# -- answer extraction and grading -------------------------------------------------------------
# pieces of solutions and answers as models write them, so that drawn texts hold boxes, fractions,
# powers and answer phrases rather than only noise
MATH_PIECES = [
    *"0123456789", "\\boxed{", "\\fbox{", "\\boxed ", "{", "}", "\\frac", "\\dfrac", "\\sqrt",
    "^", "_", ".", ",", "-", "+", "/", "=", "$", "$$", " ", "\n", "(", ")", "[", "]", "\\left(",
    "\\right)", "\\{", "\\}", "\\text{", "\\mbox{ cm}", "\\pi", "\\infty", "\\%", "%", "\\!",
    "\\,", "\\in", "\\cup", "!", "x", "y", "a", "b", "C", "\\", "The answer is", "####",
    "Answer:", "Final answer:", "**", "°", "\u2212", "units", "e",
]
math_text = st.lists(st.sampled_from(MATH_PIECES), max_size=24).map("".join)
any_text = st.text(max_size=80) | math_text
# answers with several spellings, so that equal and equivalent pairs are drawn too
known_answers = st.sampled_from([
    "1/2", "\\frac12", "\\frac{1}{2}", "0.5", ".50", "\\dfrac{1}{2}", "$\\frac{1}{2}$", "2",
    "2.0", "x=2", "\\boxed{2}", "2 units", "-3", "\\sqrt{2}", "\\sqrt2", "[0,1)",
    "x\\in[0,1)", "\\{1,2\\}", "(1,2)", "1,450,000", "1450000", "(C)", "C", "\\pi",
    "10\\%", "10", "\\infty", "\\text{even}", "even", "", " ", "$ $", "\\text{}", ".",
])


@MANY
@given(any_text)
def test_extraction_takes_any_text_and_returns_part_of_it(text):
    TALLY["cases"] += 1
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer and answer in text)
    boxed = extract_boxed(text)
    assert boxed is None or boxed in text
    assert isinstance(normalize_answer(text), str)


@settings(FEW, max_examples=300)
@given(any_text | known_answers, any_text | known_answers)
def test_equivalence_is_symmetric_and_reflexive_for_any_answer_that_normalizes_to_something(
        a, b):
    TALLY["cases"] += 1
    assert answers_equivalent(a, b) == answers_equivalent(b, a)
    # an answer that normalizes to nothing ("", "$ $", "\\text{}") is no answer, not even
    # equal to itself; every other answer is equivalent to itself
    assert answers_equivalent(a, a) == bool(normalize_answer(a))
    assert grade(a, a) == bool(normalize_answer(a))
    if answers_equivalent(a, b):  # equivalent answers grade each other correct
        assert grade(a, b) and grade(b, a)
    assert grade(None, a) is False


# brace-balanced text without backslashes: what a box's content can be and still be read whole
NO_BRACES = st.text(st.characters(exclude_characters="{}\\"), max_size=6)
balanced = st.recursive(NO_BRACES, lambda inner: st.lists(
    inner | inner.map(lambda s: "{" + s + "}"), min_size=1, max_size=4).map("".join),
    max_leaves=12)


@MANY
@given(balanced, st.text(st.characters(exclude_characters="\\"), max_size=20))
def test_a_box_around_balanced_text_gives_that_text_back(content, before):
    TALLY["cases"] += 1
    assert extract_boxed("\\boxed{" + content + "}") == content.strip()
    # text before the box changes nothing, braces in it included
    assert extract_boxed(before + "\\boxed{" + content + "}") == content.strip()


PATHOLOGICAL = [
    ("10^{10^{10}}", "10^{10^{11}}"),
    ("(x+1)^{1000}", "x^{1000}+1"),
    ("9" * 5000, "9" * 4999 + "8"),
    ("100000!", "99999!"),
    ("2^{2^{2^{2^{2}}}}", "2^{65536}"),
]


def _compare_pathological() -> None:
    for a, b in PATHOLOGICAL:
        assert answers_equivalent(a, a) and grade(a, a)
        assert not answers_equivalent(a, b) and not grade(a, b) and not grade(b, a)
        assert extract_answer(f"so the answer is $\\boxed{{{a}}}$.") == a


@pytest.mark.timeout(300)
def test_answers_that_could_keep_sympy_busy_are_compared_in_bounded_time():
    # pytest-timeout guards against a hang: in the main thread math-verify has its alarm
    _compare_pathological()
    # elsewhere no alarm can be set: such answers are compared as strings
    failures: list[BaseException] = []

    def compare() -> None:
        try:
            _compare_pathological()
        except BaseException as exc:  # re-raised in the main thread, where pytest sees it
            failures.append(exc)

    worker = threading.Thread(target=compare)
    worker.start()
    worker.join(240)
    assert not worker.is_alive(), "comparing answers off the main thread did not end"
    if failures:
        raise failures[0]


# -- the dataset reader -----------------------------------------------------------------------
nonblank = st.text(min_size=1, max_size=30).filter(str.strip)
good_row = st.fixed_dictionaries({"problem": nonblank, "answer": nonblank})


def usable_row(line: bytes) -> bool:
    """Would this line load as a problem on its own?"""
    try:
        row = json.loads(line.decode("utf-8").lstrip("\ufeff"))
        problem_from_row(row, dataset="data", line_no=1)
    except (ValueError, TypeError, AttributeError, RowError, RecursionError):
        return False
    return True


@settings(FEW, max_examples=300)
@given(rows=st.lists(good_row, min_size=1, max_size=6), bad=st.binary(max_size=60),
       replaced=st.integers(min_value=0), final_newline=st.booleans())
def test_a_file_with_a_bad_row_loads_every_good_row_and_reports_the_bad_one(
        rows, bad, replaced, final_newline):
    pieces = bad.split(b"\n")  # each a line of its own in the file
    assume(not any(usable_row(piece) for piece in pieces))
    TALLY["cases"] += 1
    replaced %= len(rows)
    lines = [json.dumps(row, ensure_ascii=False).encode() for row in rows]
    lines[replaced:replaced + 1] = pieces
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    kept = rows[:replaced] + rows[replaced + 1:]
    kept_lines = [n for n in range(1, len(lines) + 1)
                  if not replaced < n <= replaced + len(pieces)]
    bad_lines = [replaced + 1 + k for k, piece in enumerate(pieces) if piece.strip()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        path.write_bytes(data)
        if not kept:  # nothing usable is left: the one documented error
            with pytest.raises(DatasetError):
                load_user_file(str(path))
            return
        dataset = load_user_file(str(path))
    assert [(p.problem, p.answer, p.id) for p in dataset.problems] == [
        (row["problem"], row["answer"].strip(), f"data-{line}")
        for row, line in zip(kept, kept_lines, strict=True)]
    # a blank line is no row; every other bad line is reported, on its own line number
    assert [row.line for row in dataset.skipped] == bad_lines
    assert all(isinstance(row.reason, str) and row.reason for row in dataset.skipped)


# -- the server ---------------------------------------------------------------------------------
# a served name with a slash and regex metacharacters: the document's pattern must quote it
MODEL = "org/fuzz-0.5B+"
MAX_PROBLEM_CHARS = 120
LIMITS = ServerLimits(max_budget=4, max_tokens=24, max_problem_chars=MAX_PROBLEM_CHARS)
ROUTES = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
PROBLEM_FIELD = {"chat": "messages", "completions": "prompt"}
VALID = {"chat": {"model": MODEL, "messages": [{"role": "user", "content": "What is 3 + 4?"}]},
         "completions": {"model": MODEL, "prompt": "What is 3 + 4?"}}
# what one body may be refused for although each of its fields is as the document says:
# checks across fields (the budget a multiple of the width, n at most the budget, a model-name
# prefix agreeing with the fields), the problem's text, the scorer's name, and a token limit
# too small for any solution of a search that answers only with finished ones (REBASE)
CROSS_FIELD = {"budget", "width", "method", "n", "prm", "messages", "prompt", "max_tokens"}


def scripted_solution(prefix: str, j: int, stop: tuple[str, ...]):
    return f"3 + 4 = 7.\n\nSo the answer is \\boxed{{{7 + j % 2}}}.", "eos"


@pytest.fixture(scope="module")
def server():
    """Root URL of the server's app, run in this process on a scripted policy, with small
    limits so that every accepted request's search is quick."""
    pytest.importorskip("fastapi")  # the server extra
    pytest.importorskip("uvicorn")
    policy = ScriptedPolicy(scripted_solution)
    config = ServerConfig(served_model_name=MODEL, limits=LIMITS, max_step_tokens=16,
                          max_depth=3, request_timeout_s=120,
                          defaults=ServerDefaults(budget=4, width=2, max_tokens=24))
    service = load_service(engine=policy, prm=["confidence"], prompt=PromptFormat(),
                           config=config)
    with serving_in_thread(create_app(service)) as root:
        yield root


def resolved(node, document: dict):
    """``node`` with every ``$ref`` into ``document`` replaced by what it points at."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for key in node["$ref"].removeprefix("#/").split("/"):
                target = target[key]
            return resolved(target, document)
        return {key: resolved(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(value, document) for value in node]
    return node


@pytest.fixture(scope="module")
def bodies(server) -> dict[str, dict]:
    """Each endpoint's request body schema, as the running server's OpenAPI document says."""
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=60) as answer:
        document = json.loads(answer.read())
    return {endpoint: resolved(document["paths"][path]["post"]["requestBody"]["content"]
                               ["application/json"]["schema"], document)
            for endpoint, path in ROUTES.items()}


def post(server: str, endpoint: str, body: bytes) -> tuple[int, str, bytes]:
    """(status, content type, body) of a raw POST, refusals included."""
    request = urllib.request.Request(f"{server}{ROUTES[endpoint]}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.headers.get("content-type", ""), answer.read()
    except urllib.error.HTTPError as error:
        with contextlib.closing(error):
            return error.code, error.headers.get("content-type", ""), error.read()


def answered(server: str, endpoint: str, body: bytes) -> tuple[int, dict | None]:
    """POST ``body``; check the answer is a completion or an OpenAI error, never a server error.
    (status, the error object or None)."""
    status, content_type, raw = post(server, endpoint, body)
    TALLY["cases"] += 1
    assert status < 500, (status, raw[:2000], body[:2000])
    if status == 200:
        if content_type.startswith("text/event-stream"):
            assert raw.rstrip().endswith(b"data: [DONE]"), raw[-500:]
        else:
            assert json.loads(raw)["choices"], raw[:2000]
        return status, None
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["code"] == status
    assert error["param"] is None or isinstance(error["param"], str)
    return status, error


def is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


def check_refusal(status: int, error: dict | None, body: bytes, fields: set[str]) -> None:
    """A refusal names the field at fault; only a body that is not a JSON object (not JSON,
    or another JSON value) is refused as a whole, with param None."""
    if error is None:
        return
    if not is_json_object(body):
        assert (status, error["param"]) == (400, None), error
        return
    assert status in (400, 404), error
    assert error["param"] in fields, error
    if status == 404:  # only an unknown model is not found
        assert error["param"] == "model", error


def test_the_server_publishes_its_openapi_document_with_both_request_bodies(server, bodies):
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=60) as answer:
        assert answer.headers["content-type"].startswith("application/json")
        document = json.loads(answer.read())
    assert document["openapi"].startswith("3.1")
    for endpoint, schema in bodies.items():
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
        assert {"model", PROBLEM_FIELD[endpoint]} <= set(schema["required"])
        assert {"budget", "method", "prm", "temperature"} <= set(schema["properties"])
        Draft202012Validator(schema).validate(VALID[endpoint])
        assert not Draft202012Validator(schema).is_valid({**VALID[endpoint], "budget": 0})
    # the refs point at the named schemas, whose limits are this server's
    chat = document["components"]["schemas"]["ChatRequest"]
    assert chat["properties"]["budget"]["maximum"] == LIMITS.max_budget
    assert "CompletionRequest" in document["components"]["schemas"]
    for page in ("/docs", "/redoc"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server}{page}", timeout=60)
        assert missing.value.code == 404


# any JSON value: the strange numbers json reads (NaN, Infinity, integers too large for a
# float) included
scalars = (st.none() | st.booleans() | st.integers()
           | st.integers(min_value=-10**4000, max_value=10**4000)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy:
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=4), max_leaves=10)


def described(schema: dict) -> st.SearchStrategy:
    """Values valid under ``schema``: hypothesis-jsonschema's, but objects are built here
    (its object strategy calls a Hypothesis internal that current Hypothesis no longer has)."""
    if "anyOf" in schema:
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return st.one_of([described({**rest, **option}) for option in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([described({**schema, "type": one}) for one in kind])
    if kind == "object":
        properties, required = schema.get("properties", {}), set(schema.get("required", ()))
        named = st.fixed_dictionaries(
            {key: described(properties.get(key, {})) for key in sorted(required)},
            optional={key: described(value) for key, value in properties.items()
                      if key not in required})
        if schema.get("additionalProperties", True) is False:
            return named
        others = st.dictionaries(st.text(max_size=8).filter(lambda key: key not in properties),
                                 json_values(st.text(max_size=8)), max_size=2)
        return st.builds(lambda known, more: {**more, **known}, named, others)
    if kind == "array" and isinstance(schema.get("items"), dict):
        return st.lists(described(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems", 4))
    if not schema or set(schema) <= {"title", "description"}:
        return json_values(st.text(max_size=8))
    return from_schema(schema)


@pytest.mark.parametrize("endpoint", list(ROUTES))
def test_bodies_the_document_describes_are_answered_or_refused_for_a_check_across_fields(
        server, bodies, endpoint):
    schema = bodies[endpoint]
    bodies_described = described(schema)
    if endpoint == "chat":  # a drawn chat seldom ends with the user's turn: add one, often
        bodies_described |= bodies_described.map(lambda body: {
            **body, "messages": [*body["messages"], *VALID["chat"]["messages"]]})

    @settings(FEW, max_examples=300)
    @given(bodies_described)
    def check(body):
        raw = json.dumps(body).encode()
        status, error = answered(server, endpoint, raw)
        check_refusal(status, error, raw, set(schema["properties"]))
        if error is not None:
            assert error["param"] in CROSS_FIELD, (error, body)

    check()


@pytest.mark.parametrize("endpoint", list(ROUTES))
def test_any_json_body_is_answered_or_refused_naming_its_field(server, bodies, endpoint):
    fields = set(bodies[endpoint]["properties"])
    keys = st.sampled_from(sorted(fields)) | st.text(max_size=10)
    values = json_values(keys)
    # whole values, and a good body with some of its fields replaced by anything
    anything = values | st.dictionaries(keys, values, max_size=3).map(
        lambda changed: {**VALID[endpoint], **changed})

    @settings(FEW, max_examples=400)
    @given(anything)
    def check(body):
        raw = json.dumps(body).encode()
        status, error = answered(server, endpoint, raw)
        check_refusal(status, error, raw, fields)

    check()


@pytest.mark.parametrize("endpoint", list(ROUTES))
def test_any_bytes_as_a_body_are_refused_not_a_server_error(server, bodies, endpoint):
    fields = set(bodies[endpoint]["properties"])

    @settings(FEW, max_examples=150)
    @given(st.binary(max_size=200))
    def check(raw):
        status, error = answered(server, endpoint, raw)
        assert status == 400, (raw, error)
        check_refusal(status, error, raw, fields)

    check()


def test_a_body_nested_deeper_than_json_reads_is_refused(server):
    # every depth around the one where reading the body or showing a value in a refusal runs
    # out of stack (the server's own frames come on top of the body's nesting)
    limit = sys.getrecursionlimit()
    for depth in (*range(limit - 200, limit + 8), 100_000):
        nested = b"[" * depth + b"]" * depth
        for body in (nested, b'{"model": "' + MODEL.encode() + b'", "budget": ' + nested + b"}"):
            status, error = answered(server, "chat", body)
            assert status == 400, (depth, error)


@pytest.mark.parametrize("endpoint", list(ROUTES))
def test_a_problem_over_the_limit_is_refused_naming_the_limit_and_the_field(server, endpoint):
    field = PROBLEM_FIELD[endpoint]

    def with_problem(text: str) -> bytes:
        body = dict(VALID[endpoint])
        body[field] = [{"role": "user", "content": text}] if endpoint == "chat" else text
        return json.dumps(body).encode()

    status, error = answered(server, endpoint, with_problem("7" * (MAX_PROBLEM_CHARS + 1)))
    assert status == 400 and error["param"] == field, error
    assert str(MAX_PROBLEM_CHARS) in error["message"], error
    # the limit counts the problem stripped, and a problem at the limit is answered
    status, error = answered(server, endpoint,
                             with_problem(" " + "7" * MAX_PROBLEM_CHARS + "\n"))
    assert status == 200, error


def test_a_search_left_with_no_ended_solution_is_refused_naming_max_tokens(server):
    # REBASE answers only with solutions that ended: at 2 tokens, none does
    body = {**VALID["completions"], "method": "rebase", "max_tokens": 2}
    status, error = answered(server, "completions", json.dumps(body).encode())
    assert (status, error["param"]) == (400, "max_tokens"), error
    assert "max_tokens (2)" in error["message"]


def test_a_model_prefix_ending_in_a_newline_is_no_model_this_server_has(server):
    body = {**VALID["chat"], "model": f"beam-4\n/{MODEL}"}
    status, error = answered(server, "chat", json.dumps(body).encode())
    assert (status, error["param"]) == (404, "model"), error
