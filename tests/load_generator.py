"""A bounded load test of ``ttscale serve`` on localhost: many clients, each sending its share
of requests through the official ``openai`` client (no retries), while ``/health`` is polled.
Used by the server's test and by ``benchmarks/server_load.py``."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

PROBLEMS = (
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "A pen costs 2 dollars. How much do 5 pens cost?",
    "Sara reads 6 pages a day. How many pages does she read in 7 days?",
    "There are 12 eggs and 5 are eaten. How many eggs are left?",
    "A box holds 8 cans. How many cans are in 3 boxes?",
)


@dataclass
class LoadResult:
    requests: int
    clients: int
    statuses: dict[str, int]  # final HTTP status (or the exception's name) -> requests
    answered_latency_s: list[float] = field(repr=False)  # first try to answer, waits included
    refused_latency_s: list[float] = field(repr=False)  # of each 429, to its arrival
    refusals: int = 0  # 429s, retried ones included
    health_checks: int = 0
    health_failures: int = 0
    health_max_s: float = 0.0
    wall_s: float = 0.0
    retry_after_s: list[int] = field(default_factory=list, repr=False)

    @staticmethod
    def quantile(values: list[float], q: float) -> float | None:
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]

    def summary(self) -> dict:
        answered = self.answered_latency_s
        return {
            "requests": self.requests, "clients": self.clients, "statuses": self.statuses,
            "answered": len(answered), "refusals_429": self.refusals,
            "p50_s": self.quantile(answered, 0.50), "p99_s": self.quantile(answered, 0.99),
            "refusal_p99_s": self.quantile(self.refused_latency_s, 0.99),
            "retry_after_s": sorted(set(self.retry_after_s)),
            "answered_per_s": len(answered) / self.wall_s if self.wall_s else None,
            "health_checks": self.health_checks, "health_failures": self.health_failures,
            "health_max_s": self.health_max_s, "wall_s": self.wall_s,
        }

    def to_dict(self) -> dict:
        return asdict(self)


async def run_load(base_url: str, model: str, *, requests: int = 200, clients: int = 50,
                   api_key: str = "none", budget: int = 2, max_tokens: int = 32,
                   method: str = "bon", timeout_s: float = 300.0, retries: int = 3
                   ) -> LoadResult:
    """Send ``requests`` chat requests from ``clients`` concurrent clients; every request ends
    answered, refused or failed, each try within ``timeout_s`` (a hang shows as a timeout).
    A refused request is tried again after the server's Retry-After, at most ``retries``
    times, as a well-behaved client would."""
    import httpx2
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                timeout=timeout_s)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(number)
    statuses: Counter[str] = Counter()
    answered: list[float] = []
    refused: list[float] = []
    retry_after: list[int] = []
    finished = asyncio.Event()

    async def one_client() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            start = time.monotonic()
            for attempt in range(retries + 1):
                try:
                    reply = await client.chat.completions.create(
                        model=model, max_tokens=max_tokens, seed=number,
                        messages=[{"role": "user",
                                   "content": PROBLEMS[number % len(PROBLEMS)]}],
                        extra_body={"method": method, "budget": budget})
                except openai.RateLimitError as exc:
                    refused.append(time.monotonic() - start)
                    wait = int(exc.response.headers.get("retry-after", "-1"))
                    retry_after.append(wait)
                    if attempt == retries:
                        statuses["429"] += 1
                    else:
                        await asyncio.sleep(max(wait, 0))
                    continue
                except openai.APIStatusError as exc:
                    statuses[str(exc.status_code)] += 1
                except Exception as exc:  # a timeout or a dropped connection: counted
                    statuses[type(exc).__name__] += 1
                else:
                    if reply.choices and reply.choices[0].message.content:
                        statuses["200"] += 1
                        answered.append(time.monotonic() - start)
                    else:
                        statuses["empty"] += 1
                break

    health = {"checks": 0, "failures": 0, "max_s": 0.0}

    async def watch_health() -> None:
        root = base_url.rsplit("/v1", 1)[0]
        async with httpx2.AsyncClient(timeout=10) as http:
            while not finished.is_set():
                start = time.monotonic()
                try:
                    ok = (await http.get(f"{root}/health")).status_code == 200
                except httpx2.HTTPError:
                    ok = False
                health["checks"] += 1
                health["failures"] += not ok
                health["max_s"] = max(health["max_s"], time.monotonic() - start)
                await asyncio.sleep(0.25)

    start = time.monotonic()
    watcher = asyncio.create_task(watch_health())
    try:
        await asyncio.gather(*(one_client() for _ in range(clients)))
    finally:
        finished.set()
        await watcher
        await client.close()
    return LoadResult(requests, clients, dict(statuses), answered, refused, len(refused),
                      health["checks"], health["failures"], health["max_s"],
                      time.monotonic() - start, retry_after)
