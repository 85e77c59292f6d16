"""One line per search on what its method decided, for the viewer: read from the entry a
method writes into its record (the planner's choice has its own line in the viewer)."""

from __future__ import annotations

from collections.abc import Callable


def _adaptive(d: dict) -> str:
    windows = ", ".join(map(str, d.get("windows") or ()))
    return (f"drew {d['drawn']} of {d['budget']} samples (windows {windows}); stopped: "
            f"{str(d.get('stopped_by', '?')).replace('_', ' ')}")


def _particles(d: dict) -> str:
    sweeps = d.get("sweeps") or []
    rounds = sum(len(s.get("rounds") or ()) for s in sweeps)
    resampled = sum(1 for s in sweeps for r in s.get("rounds") or () if r.get("ancestors"))
    return (f"{len(sweeps)} sweep(s), {rounds} round(s), resampled {resampled} time(s) "
            f"(weight temperature {d.get('temperature')})")


def _rebase(d: dict) -> str:
    rounds = d.get("rounds") or []
    allotted = " | ".join(",".join(map(str, r.get("allotment") or ())) for r in rounds)
    return f"{len(rounds)} round(s); children per frontier node: {allotted}"


def _deepconf(d: dict) -> str:
    traces = d.get("traces") or []
    kept = len(d.get("kept") or ())
    threshold = d.get("threshold")
    bar = f"{threshold:.3f}" if isinstance(threshold, int | float) else "?"
    stopped = sum(1 for t in traces if t.get("stopped_at_depth") is not None)
    line = f"{d.get('mode')}: {kept} of {len(traces)} traces vote, confidence bar {bar}"
    return line + (f"; {stopped} stopped early" if stopped else "")


NOTES: dict[str, Callable[[dict], str]] = {
    "adaptive": _adaptive, "particles": _particles, "rebase": _rebase, "deepconf": _deepconf,
}


def method_note(record: dict) -> str | None:
    """The line for the first method entry the record holds; None when it holds none or the
    entry is not as expected (a record is shown without it rather than not at all)."""
    for key, note in NOTES.items():
        entry = record.get(key)
        if isinstance(entry, dict):
            try:
                return note(entry)
            except (KeyError, TypeError, ValueError):
                return None
    return None
