"""What a finished run prints: its accuracy table, then a note on the work done, the planner's
choices and any problems that failed."""

from __future__ import annotations

from collections import Counter

from ttscale.cli.console import console, fail, out
from ttscale.planner.auto import AUTO


def print_summary(outcome, config, title: str) -> None:
    from ttscale.report.summary import render_table, summarize

    rows = summarize(outcome.records, config.jobs())
    out.print(render_table(rows, title))
    print_run_note(outcome)


def print_run_note(outcome) -> None:
    note = f"{outcome.new_records} new record(s) in {outcome.seconds:.1f} s"
    if outcome.policy_generated_tokens and outcome.seconds > 0:
        note += (f", {outcome.policy_generated_tokens} tokens generated "
                 f"({outcome.policy_generated_tokens / outcome.seconds:.0f} tok/s)")
        if outcome.computed_tokens > outcome.policy_generated_tokens:
            note += (f", {outcome.computed_tokens} computed by policy and scorer, prompts "
                     f"included ({outcome.computed_tokens / outcome.seconds:.0f} tok/s)")
    chosen = Counter(f"{r['plan']['method']}@{r['plan']['n']}" for r in outcome.records
                     if r["method"] == AUTO and "plan" in r)
    if chosen:
        out.print("auto chose: " + ", ".join(f"{k} ×{v}" for k, v in sorted(chosen.items())),
                  highlight=False)
    note += f"; records: {outcome.run_dir / 'records.jsonl'}"
    if outcome.skipped_bad_lines:
        note += f"; {outcome.skipped_bad_lines} unreadable line(s) skipped (see warnings)"
    out.print(note, highlight=False)
    if outcome.failures:
        for failure in outcome.failures:
            console.print(f"[red]problem {failure.problem_id} failed:[/red] {failure.message}",
                          highlight=False)
        fail(f"{len(outcome.failures)} problem(s) failed and have no records; the others were "
             "saved. Fix the cause and rerun the same command to finish them.")
