"""Readable log axes for the matplotlib figures: a few labelled ticks at round values whatever
the range (a factor of 1.01 to 10^20), compact labels ("20 G", "2 T" for FLOPs; 1, 4, 16, 64
for N), minor ticks unlabelled. Imported only where matplotlib draws."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter, Locator, NullFormatter

MAX_LABELS = 6
# ticks within a decade, tried in this order after whole powers of 10
DECADE_STEPS = ((1, 2, 5), (1, 3), (1, 2, 3, 5), tuple(range(1, 10)), (1, 1.5, 2, 3, 5, 7))
SI_PREFIXES = {3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E", 21: "Z", 24: "Y"}


def _shortest(value: float) -> str:
    """The shortest plain decimal that reads back as ``value`` (tick values are round):
    200 -> "200", 2.5 -> "2.5", 0.05 -> "0.05"; never "2e+02"."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    for significant in range(1, 8):
        decimals = max(0, significant - 1 - magnitude)
        text = f"{round(value, decimals):.{decimals}f}"
        if math.isclose(float(text), value, rel_tol=1e-9, abs_tol=0.0):
            return text
    return f"{value:.7g}"


def si_label(value: float) -> str:
    """``2e10`` -> "20 G", ``1.5e12`` -> "1.5 T", ``250`` -> "250"; past the prefixes 10^k."""
    if value <= 0 or not math.isfinite(value):
        return ""
    exponent = 3 * math.floor(math.log10(value) / 3 + 1e-9)
    if exponent < 3:
        return _shortest(value)
    if exponent not in SI_PREFIXES:
        power = math.log10(value)
        if math.isclose(power, round(power), abs_tol=1e-9):
            return f"$10^{{{round(power)}}}$"
        mantissa, power = _shortest(value / 10 ** math.floor(power)), math.floor(power)
        return f"${mantissa}\\times10^{{{power}}}$"
    return f"{_shortest(value / 10 ** exponent)} {SI_PREFIXES[exponent]}"


def integer_label(value: float) -> str:
    """Budgets N: plain integers (1, 16, 1024)."""
    if value <= 0 or not math.isfinite(value):
        return ""
    return str(round(value)) if math.isclose(value, round(value)) else _shortest(value)


class ReadableLogLocator(Locator):
    """Major ticks of a log axis: the first of whole powers (every decade, every second
    decade, ...), 1-2-5, 1-3, 1-2-3-5, 1-to-9 and 1-1.5-2-3-5-7 steps within decades, and (for
    ranges of about a decade or less) round linear steps, that puts 3 to ``max_labels`` ticks
    in view with no two closer than a (``max_labels`` + 1)-th of the axis; else the most
    ticks (2, or 1) that keep that gap. Ticks follow the view, so ``set_xlim`` is honoured."""

    def __init__(self, base: float = 10.0, max_labels: int = MAX_LABELS,
                 integer: bool = False) -> None:
        self.base = base
        self.max_labels = max_labels
        self.integer = integer

    def __call__(self):
        vmin, vmax = self.axis.get_view_interval()
        return self.tick_values(vmin, vmax)

    @staticmethod
    def _inside(values, low: float, high: float) -> list[float]:
        return [v for v in values if low * (1 - 1e-9) <= v <= high * (1 + 1e-9)]

    def _powers(self, low: float, high: float, stride: int) -> list[float]:
        first = math.ceil(math.log(low, self.base) / stride - 1e-9)
        last = math.floor(math.log(high, self.base) / stride + 1e-9)
        return [float(self.base) ** (k * stride) for k in range(first, last + 1)]

    def _within_decades(self, low: float, high: float, subs: tuple[float, ...]) -> list[float]:
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        return self._inside((sub * 10.0 ** k for k in range(first, last + 1) for sub in subs),
                            low, high)

    def _linear(self, low: float, high: float):
        """Multiples of round steps, finest first (integers only where ``integer``)."""
        exponent = math.floor(math.log10(high - low)) - 2
        for k in range(exponent, exponent + 4):
            for mantissa in (1, 2, 2.5, 5):
                step = mantissa * 10.0 ** k
                if self.integer and (step < 1 or step != round(step)):
                    continue
                first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
                if 0 < last - first + 1 <= self.max_labels:
                    yield [i * step for i in range(max(first, 1), last + 1)]

    def candidates(self, low: float, high: float):
        span = math.log(high / low, self.base)
        for stride in range(1, math.ceil(span) + 2):
            yield self._powers(low, high, stride)
        if self.base == 10:
            for subs in DECADE_STEPS:
                yield self._within_decades(low, high, subs)
        yield from self._linear(low, high)

    def tick_values(self, vmin, vmax):
        low, high = sorted((float(vmin), float(vmax)))
        if not (math.isfinite(low) and math.isfinite(high)) or high <= 0:
            return np.array([])
        if low <= 0:
            low = high / self.base ** 2
        if high / low < 1 + 1e-9:
            return np.array([low])
        span = math.log(high / low)
        fallback: list[float] = []
        for ticks in self.candidates(low, high):
            if not ticks or len(ticks) > self.max_labels:
                continue
            gaps = [math.log(b / a) for a, b in zip(ticks, ticks[1:], strict=False)]
            if gaps and min(gaps) < span / (self.max_labels + 1):
                continue
            if len(ticks) >= 3:
                return np.array(ticks)
            if len(ticks) > len(fallback):
                fallback = ticks
        return np.array(fallback)


class LogMinorLocator(Locator):
    """Minor ticks of a log axis: every power of the base the major ticks skip, and, over at
    most ``digits_up_to`` decades of a base-10 axis, the digits 2 to 9 of each decade."""

    def __init__(self, base: float = 10.0, digits_up_to: float = 4.0) -> None:
        self.base = base
        self.digits_up_to = digits_up_to

    def __call__(self):
        vmin, vmax = self.axis.get_view_interval()
        return self.tick_values(vmin, vmax)

    def tick_values(self, vmin, vmax):
        low, high = sorted((float(vmin), float(vmax)))
        if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= low:
            return np.array([])
        first = math.floor(math.log(low, self.base))
        last = math.ceil(math.log(high, self.base))
        if last - first > 60:
            return np.array([])
        digits = self.base == 10 and math.log10(high / low) <= self.digits_up_to
        subs = range(1, 10) if digits else (1,)
        values = [sub * float(self.base) ** k for k in range(first, last + 1) for sub in subs]
        return np.array([v for v in values if low <= v <= high])


def readable_log_axis(axis: Axis, *, base: float = 10.0, label=si_label,
                      integer: bool = False) -> None:
    """Put ``axis`` (already on a log scale) on ``ReadableLogLocator`` with ``label`` for the
    labels; minor ticks at the other digits of each decade, unlabelled."""
    axis.set_major_locator(ReadableLogLocator(base=base, integer=integer))
    axis.set_major_formatter(FuncFormatter(lambda value, _position: label(value)))
    axis.set_minor_locator(LogMinorLocator(base=base))
    axis.set_minor_formatter(NullFormatter())
