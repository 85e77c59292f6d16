"""The difficulty ladder: templated arithmetic word problems with 1, 2, 3, … operations.

A problem is a chain of operations on whole numbers, each told as one sentence from a set of
templates (names, items, containers, relatives and groups vary; GSM-Symbolic, Mirzadeh et al.
2024, builds GSM8K variants the same way). Its ``level`` is the number of operations, so
difficulty is known by construction, and every intermediate quantity is recorded
(``quantities``: value, expression, operation), so the correctness of each step a policy writes
can be decided exactly rather than estimated by rollouts.

Operations: ``add`` ("Emma finds 12 more pencils."), ``sub`` ("Emma gives away 7 pencils."),
``mul`` (a start of "4 boxes with 6 pencils in each", or "Emma's brother has 3 times as many
pencils as Emma.") and ``div`` ("Emma shares the pencils equally among 4 friends."). Every
value is a positive whole number below :data:`MAX_VALUE`; the quantities are distinct from each
other and from the numbers given in the text, so a number a step computes names one quantity.

Generation is a pure function of the seed: the same arguments give the same problems on any
machine (Python's ``random.Random`` is specified across platforms). The package ships fixed
splits (``ladder_train`` and ``ladder`` = test) made by :func:`shipped_splits`; ``ttscale
ladder`` writes more."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ttscale.errors import ConfigError

MAX_VALUE = 999
MAX_LEVEL = 8
OPERATIONS = ("add", "sub", "mul", "div")
MAX_TRIES = 1000

# (plural, container, singular container plural) — the things counted
ITEMS = (
    ("pencils", "box", "boxes"), ("apples", "bag", "bags"), ("stickers", "sheet", "sheets"),
    ("marbles", "jar", "jars"), ("cookies", "tray", "trays"), ("stamps", "album", "albums"),
    ("shells", "bucket", "buckets"), ("cards", "pack", "packs"), ("beads", "string", "strings"),
    ("eggs", "carton", "cartons"), ("balloons", "bunch", "bunches"), ("books", "shelf",
                                                                      "shelves"),
    ("crayons", "case", "cases"), ("buttons", "tin", "tins"), ("toy cars", "crate", "crates"),
    ("oranges", "basket", "baskets"),
)
NAMES = ("Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Ethan", "Sofia", "Leo",
         "Chloe", "Omar", "Priya", "Mateo", "Hana", "Jack", "Zoe", "Ravi", "Lena", "Sam")
RELATIVES = ("brother", "sister", "cousin", "aunt", "uncle", "neighbor", "teacher", "friend")
GROUPS = (("friends", "friend"), ("classmates", "classmate"), ("teammates", "teammate"),
          ("cousins", "cousin"), ("neighbors", "neighbor"))

ADD_SENTENCES = ("{S} finds {b} more {item}.", "{S} buys {b} more {item}.",
                 "{S} gets {b} more {item} as a gift.", "Then {s} receives {b} more {item}.")
SUB_SENTENCES = ("{S} gives away {b} {item}.", "{S} loses {b} {item}.",
                 "{S} sells {b} of the {item}.", "Then {s} uses {b} of the {item}.")
START_SENTENCES = ("{S} has {a} {item}.", "{S} collects {a} {item}.",
                   "{S} starts with {a} {item}.")


@dataclass(frozen=True)
class Quantity:
    """One intermediate quantity: its value, how it is computed from earlier values or given
    numbers, the operation, and what it counts."""

    value: int
    expression: str
    operation: str
    description: str


@dataclass(frozen=True)
class LadderProblem:
    id: str
    level: int
    problem: str
    quantities: tuple[Quantity, ...]
    givens: tuple[int, ...]
    solution: str = field(default="")

    @property
    def answer(self) -> str:
        return str(self.quantities[-1].value)

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(q.operation for q in self.quantities)

    def to_row(self) -> dict:
        """The dataset row: ``ttscale.datasets`` reads ``problem``, ``answer``, ``level``,
        ``subject`` (the operations), ``solution`` and ``quantities``."""
        return {
            "id": self.id,
            "problem": self.problem,
            "answer": self.answer,
            "level": self.level,
            "subject": "+".join(self.operations),
            "solution": self.solution,
            "quantities": [{"value": q.value, "expression": q.expression,
                            "operation": q.operation, "description": q.description}
                           for q in self.quantities],
            "givens": list(self.givens),
        }


class _Chain:
    """The story being written: the sentences, the current subject and its count."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.name = rng.choice(NAMES)
        self.item, self.container, self.containers = rng.choice(ITEMS)
        self.subject = self.name  # who holds the current count
        self.used_relatives: set[str] = set()
        self.used_groups: set[str] = set()
        self.sentences: list[str] = []
        self.steps: list[str] = []
        self.quantities: list[Quantity] = []
        self.givens: list[int] = []
        self.value = 0
        self.question_verb = "have now"

    def say(self, template: str, **numbers: int) -> None:
        self.sentences.append(_capitalise(template.format(
            S=self.subject, s=self.subject, item=self.item, **numbers)))
        self.givens.extend(numbers.values())

    def record(self, value: int, expression: str, operation: str, step: str) -> None:
        self.quantities.append(Quantity(value, expression, operation,
                                        f"{self.item} {self.subject} has"))
        self.steps.append(_capitalise(step))
        self.value = value


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _operand(rng: random.Random, wide: bool) -> int:
    return rng.randint(10, 99) if wide else rng.randint(2, 20)


def _start(chain: _Chain, first: str, wide: bool) -> None:
    rng = chain.rng
    if first == "mul":  # the first operation makes the starting count
        count, each = rng.randint(2, 9), rng.randint(3, 12)
        chain.say(f"{{S}} buys {{a}} {chain.containers} of {{item}}. Each {chain.container} "
                  "holds {b} {item}.", a=count, b=each)
        chain.record(count * each, f"{count} * {each}", "mul",
                     f"{chain.subject} buys {count} * {each} = {count * each} {chain.item}.")
        return
    if first == "div":  # a starting count the division can split
        divisor = rng.randint(2, 9)
        start = divisor * rng.randint(2, 15 if not wide else 40)
    else:
        start = _operand(rng, wide) + (20 if first == "sub" else 0)
    chain.say(rng.choice(START_SENTENCES), a=start)
    chain.value = start


def _apply(chain: _Chain, operation: str, wide: bool) -> bool:
    """Tell one more operation on the current count; False when it cannot apply here."""
    rng, value = chain.rng, chain.value
    if operation == "add":
        b = _operand(rng, wide)
        if value + b > MAX_VALUE:
            return False
        chain.say(rng.choice(ADD_SENTENCES), b=b)
        chain.record(value + b, f"{value} + {b}", "add",
                     f"{chain.subject} has {value} + {b} = {value + b} {chain.item}.")
        return True
    if operation == "sub":
        if value < 3:
            return False
        b = rng.randint(1, value - 1) if not wide or value < 12 else rng.randint(value // 4,
                                                                               value - 1)
        chain.say(rng.choice(SUB_SENTENCES), b=b)
        chain.record(value - b, f"{value} - {b}", "sub",
                     f"{chain.subject} has {value} - {b} = {value - b} {chain.item} left.")
        return True
    if operation == "mul":
        factors = [f for f in range(2, 7) if value * f <= MAX_VALUE]
        relatives = [r for r in RELATIVES if r not in chain.used_relatives]
        if not factors or not relatives:
            return False
        b, relative = rng.choice(factors), rng.choice(relatives)
        chain.used_relatives.add(relative)
        holder = f"{chain.name}'s {relative}"
        times = "twice" if b == 2 else f"{b} times"
        chain.sentences.append(_capitalise(
            f"{holder} has {times} as many {chain.item} as {chain.subject}."))
        chain.givens.append(b)
        chain.subject = holder
        chain.record(value * b, f"{value} * {b}", "mul",
                     f"{holder} has {value} * {b} = {value * b} {chain.item}.")
        return True
    divisors = [d for d in range(2, 10) if value % d == 0 and value // d >= 2]
    groups = [g for g in GROUPS if g[0] not in chain.used_groups]
    if not divisors or not groups:
        return False
    b, (plural, singular) = rng.choice(divisors), rng.choice(groups)
    chain.used_groups.add(plural)
    chain.sentences.append(_capitalise(
        f"{chain.subject} shares the {chain.item} equally among {b} {plural}."))
    chain.givens.append(b)
    chain.subject = f"each {singular}"
    chain.record(value // b, f"{value} / {b}", "div",
                 f"Each {singular} gets {value} / {b} = {value // b} {chain.item}.")
    return True


def _valid(chain: _Chain) -> bool:
    values = [q.value for q in chain.quantities]
    return (len(set(values)) == len(values) and not set(values) & set(chain.givens)
            and all(0 < v <= MAX_VALUE for v in values))


def generate_problem(level: int, rng: random.Random, problem_id: str) -> LadderProblem:
    """One problem of ``level`` operations, drawn from ``rng``."""
    if not 1 <= level <= MAX_LEVEL:
        raise ConfigError(f"ladder level {level} is out of range: levels run from 1 to "
                          f"{MAX_LEVEL} operations")
    for _ in range(MAX_TRIES):
        chain = _Chain(rng)
        wide = rng.random() < 0.5
        operations = [rng.choice(OPERATIONS) for _ in range(level)]
        _start(chain, operations[0], wide)
        todo = operations[1:] if operations[0] == "mul" else operations
        if not all(_apply(chain, operation, wide) for operation in todo) or not _valid(chain):
            continue
        subject = chain.subject
        question = (f"How many {chain.item} does {subject} get?"
                    if operations[-1] == "div" else
                    f"How many {chain.item} does {subject} have now?")
        steps = [f"Step {k}: {text}" for k, text in enumerate(chain.steps, start=1)]
        solution = "\n".join([*steps, f"The answer is \\boxed{{{chain.value}}}."])
        return LadderProblem(id=problem_id, level=level,
                             problem=" ".join([*chain.sentences, question]),
                             quantities=tuple(chain.quantities), givens=tuple(chain.givens),
                             solution=solution)
    raise RuntimeError(f"no ladder problem of level {level} found in {MAX_TRIES} tries")


def generate(levels: Iterable[int], per_level: int, seed: int, prefix: str = "ladder",
             exclude: Iterable[str] = ()) -> list[LadderProblem]:
    """``per_level`` distinct problems at each level, reproducible from ``seed``; texts in
    ``exclude`` (another split's) are never produced."""
    if per_level < 1:
        raise ConfigError(f"--per-level must be at least 1 (got {per_level})")
    rng = random.Random(seed)
    seen = set(exclude)
    problems = []
    for level in levels:
        made = 0
        while made < per_level:
            problem = generate_problem(level, rng, f"{prefix}-L{level}-{made + 1:04d}")
            if problem.problem in seen:
                continue
            seen.add(problem.problem)
            problems.append(problem)
            made += 1
    return problems


SHIPPED_LEVELS = (1, 2, 3, 4, 5, 6)
SHIPPED_SEEDS = {"ladder_test": 20261, "ladder_train": 20262}
SHIPPED_PER_LEVEL = {"ladder_test": 100, "ladder_train": 500}


def shipped_splits() -> dict[str, list[LadderProblem]]:
    """The splits shipped as built-in datasets: the test split first, so the train split
    excludes every test text."""
    test = generate(SHIPPED_LEVELS, SHIPPED_PER_LEVEL["ladder_test"],
                    SHIPPED_SEEDS["ladder_test"], prefix="ladder-test")
    train = generate(SHIPPED_LEVELS, SHIPPED_PER_LEVEL["ladder_train"],
                     SHIPPED_SEEDS["ladder_train"], prefix="ladder-train",
                     exclude=(p.problem for p in test))
    return {"ladder_test": test, "ladder_train": train}


def write_jsonl(problems: Sequence[LadderProblem], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for problem in problems:
            handle.write(json.dumps(problem.to_row(), ensure_ascii=False) + "\n")


def parse_levels(text: str) -> tuple[int, ...]:
    """``"1-3"`` or ``"1,2,5"`` -> levels."""
    levels: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            levels.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ConfigError(f"--levels {text!r} is not a list of levels such as 1-3 or "
                          "1,2,5") from None
    if not levels:
        raise ConfigError("--levels is empty: give levels such as 1-3")
    for level in levels:
        if not 1 <= level <= MAX_LEVEL:
            raise ConfigError(f"ladder level {level} is out of range: levels run from 1 to "
                              f"{MAX_LEVEL} operations")
    return tuple(dict.fromkeys(levels))
