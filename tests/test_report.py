"""Report numbers from a small synthetic set of records whose accuracy, FLOPs and intervals
are known; the viewer's data; the files `ttscale report` writes; and its answers to bad
input."""

from __future__ import annotations

import csv
import json
import re

import pytest
from typer.testing import CliRunner

from ttscale.cli.main import app
from ttscale.errors import ConfigError
from ttscale.report import build_report
from ttscale.report.curves import ALL, MAJORITY, PASS, all_series, difficulty_bins
from ttscale.report.figures import draw_static, plotly_figure
from ttscale.report.runs import load_run, load_runs
from ttscale.report.tables import accuracy_grid, compare_table, models_table
from ttscale.report.viewer_data import decode_chunk, viewer_data
from ttscale.stats import bootstrap_mean

AGGREGATIONS = ("-/majority", "last/prm_vote", "min/prm_max")


def _chain_tree(samples: int, steps: int = 2, start_id: int = 1) -> list[dict]:
    nodes = [{"id": 0, "parent": None, "depth": 0, "group": 0, "text": "", "tokens": 0,
              "score": None, "status": "kept", "finish_reason": None}]
    next_id = start_id
    for sample in range(samples):
        parent = 0
        for step in range(steps):
            last = step == steps - 1
            nodes.append({"id": next_id, "parent": parent, "depth": step + 1, "group": 0,
                          "text": f"Step {step + 1} of sample {sample}: $x^{step}$",
                          "tokens": 10 + step, "score": round(0.1 * (sample + 1) + 0.01 * step, 4),
                          "status": "finished" if last else "kept",
                          "finish_reason": "stop" if last else None})
            parent = next_id
            next_id += 1
    return nodes


def _record(pid: str, method: str, n: int, correct: bool, *, flops: float = 1e9,
            candidates_right: int = 0, pool: int | None = None, by_aggregation=None,
            pass_at_n: bool | None = None, level: int | None = None, tree=None) -> dict:
    size = n if method != "greedy" else 1
    leaves = [node["id"] for node in (tree or []) if node["status"] == "finished"][:size]
    candidates = [{"node": leaves[i] if i < len(leaves) else None,
                   "answer": "1" if i < candidates_right else "2",
                   "correct": i < candidates_right, "score": 0.5, "step_scores": [0.5],
                   "finish_reason": "stop", "steps": 1, "generated_tokens": 10, "group": 0}
                  for i in range(size)]
    return {
        "version": 1, "key": f"{pid}|{method}|{n}", "problem_id": pid, "dataset": "gsm8k",
        "level": level, "subject": None, "method": method, "n": n,
        "width": 2 if method in ("beam", "dvts") else None,
        "scorer": None if method in ("greedy", "majority") else "confidence",
        "aggregation": ({"step": None, "answer": "majority"} if method in ("greedy", "majority")
                        else {"step": "last", "answer": "prm_vote"}),
        "answer": "1" if correct else "2", "reference": "1", "correct": correct,
        "selected": 0, "votes": {},
        "pass_at_n": correct if pass_at_n is None else pass_at_n,
        "by_aggregation": by_aggregation or {"-/majority": {"answer": "2", "correct": False}},
        "candidates": candidates, "tree": tree or [],
        "ledger": {"policy_parameters": 100, "scorer_parameters": 0,
                   "policy_tokens": {"prompt": 10, "cached_prompt": 0, "generated": 20},
                   "scorer_tokens": {"prompt": 0, "cached_prompt": 0, "generated": 0},
                   "policy_calls": 1, "scorer_calls": 0, "policy_flops": flops * 0.75,
                   "scorer_flops": flops * 0.25, "total_flops": flops},
        "seconds": 1.0, "pool_size": pool,
    }


def _write_run(folder, records, *, name="SmolLM2-135M-Instruct", parameters=134_515_008,
               scorer="confidence", dataset="gsm8k", extra_lines=()):
    folder.mkdir(parents=True)
    manifest = {"identity": {"dataset": dataset, "scorer": scorer,
                             "policy": {"name": name, "parameters": parameters}},
                "dataset_selection": {"name": dataset}, "model": {"name": name,
                                                                  "parameters": parameters}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
    return folder


# Four problems. bon@4 right on 0 and 1 (FLOPs 1, 2, 3, 4 G); bon@16 right on 0, 1, 2;
# pass rates from the 16-sample pool: 12/16 (easy), 4/16 (medium), 1/16 and 0/16 (hard).
PIDS = ("gsm8k-test-0000", "gsm8k-test-0001", "gsm8k-test-0002", "gsm8k-test-0003")
RIGHT_OF_16 = (12, 4, 1, 0)


def _small_run_records() -> list[dict]:
    records = []
    for k, pid in enumerate(PIDS):
        tree = _chain_tree(16)
        by_agg = {"-/majority": {"answer": "1", "correct": k == 0},
                  "last/prm_vote": {"answer": "1", "correct": k < 2},
                  "min/prm_max": {"answer": "1", "correct": k == 3}}
        records.append(_record(pid, "bon", 4, k < 2, flops=(k + 1) * 1e9, pool=16,
                               candidates_right=min(RIGHT_OF_16[k], 4), by_aggregation=by_agg,
                               pass_at_n=k < 3, tree=tree))
        records.append(_record(pid, "bon", 16, k < 3, flops=(k + 1) * 4e9, pool=16,
                               candidates_right=RIGHT_OF_16[k], by_aggregation=by_agg,
                               pass_at_n=k < 3, tree=tree))
        records.append(_record(pid, "greedy", 1, k == 0, flops=0.5e9))
        records.append(_record(pid, "beam", 4, k in (0, 2), flops=2e9, tree=_chain_tree(4, 3)))
    return records


@pytest.fixture()
def small_run(tmp_path):
    return _write_run(tmp_path / "small", _small_run_records())


class TestCurves:
    def test_accuracy_flops_and_interval_of_each_point(self, small_run):
        run = load_run(small_run)
        series = all_series([run], difficulty_bins("none", [run]))
        bon = next(s for s in series if s.method == "bon" and s.default and s.bin == ALL)
        assert bon.aggregation == "last/prm_vote"
        four, sixteen = bon.points
        assert (four.n, four.problems, four.accuracy.value) == (4, 4, 0.5)
        assert four.flops == pytest.approx(2.5e9)  # mean of 1, 2, 3, 4 G
        assert sixteen.accuracy.value == 0.75 and sixteen.flops == pytest.approx(10e9)
        expected = bootstrap_mean([1.0, 1.0, 0.0, 0.0])
        assert (four.accuracy.low, four.accuracy.high) == (expected.low, expected.high)
        assert 0.0 <= four.accuracy.low < 0.5 < four.accuracy.high <= 1.0

    def test_other_aggregations_reference_lines_and_greedy(self, small_run):
        run = load_run(small_run)
        series = {(s.method, s.aggregation): s for s in
                  all_series([run], difficulty_bins("none", [run]))}
        hidden = series[("bon", "min/prm_max")]
        assert not hidden.default and hidden.points[0].accuracy.value == 0.25
        # majority@N comes from the BoN pool when no majority records exist; it and pass@N
        # cost the samples only (policy FLOPs), not their scoring
        majority = series[(MAJORITY, "-/majority")]
        assert [p.accuracy.value for p in majority.points] == [0.25, 0.25]
        assert majority.points[0].flops == pytest.approx(2.5e9 * 0.75)
        passing = series[(PASS, "-")]
        assert [p.accuracy.value for p in passing.points] == [0.75, 0.75]
        greedy = series[("greedy", "-/majority")]
        assert [(p.n, p.accuracy.value) for p in greedy.points] == [(1, 0.25)]
        assert ("beam", "-/majority") not in series  # beam's own majority is not a line

    def test_absolute_bins_from_the_largest_pool(self, small_run):
        run = load_run(small_run)
        bins = difficulty_bins("absolute", [run])
        assert bins.of_problem == {PIDS[0]: "easy", PIDS[1]: "medium", PIDS[2]: "hard",
                                   PIDS[3]: "hard"}
        assert bins.facets() == (ALL, "easy", "medium", "hard")
        series = all_series([run], bins)
        hard = next(s for s in series if s.method == "bon" and s.default and s.bin == "hard")
        assert [(p.problems, p.accuracy.value) for p in hard.points] == [(2, 0.0), (2, 0.5)]

    def test_quantile_and_level_bins(self, tmp_path):
        records = _small_run_records()
        for record in records:
            record["level"] = 1 + PIDS.index(record["problem_id"]) % 2
        run = load_run(_write_run(tmp_path / "r", records))
        quantile = difficulty_bins("quantile:2", [run])
        assert quantile.of_problem[PIDS[0]] == "level1" and quantile.of_problem[PIDS[3]] == "level2"
        levels = difficulty_bins("level", [run])
        assert levels.names == ("level 1", "level 2")
        assert levels.of_problem[PIDS[1]] == "level 2"
        with pytest.raises(ConfigError, match="unknown difficulty bins"):
            difficulty_bins("thirds", [run])

    def test_level_bins_need_levels(self, small_run):
        run = load_run(small_run)
        with pytest.raises(ConfigError, match="needs problems with a level"):
            difficulty_bins("level", [run])


class TestTables:
    def test_grid_cells_say_accuracy_interval_and_flops(self, small_run):
        run = load_run(small_run)
        table = accuracy_grid(all_series([run], difficulty_bins("none", [run])), [run])
        assert table.columns == ("method", "N=1", "N=4", "N=16")
        rows = {row[0]: row for row in table.rows}
        expected = bootstrap_mean([1.0, 1.0, 0.0, 0.0])
        assert rows["bon (last/prm_vote)"][2] == (
            f"50.0 [{expected.low * 100:.1f}, {expected.high * 100:.1f}] · 2.50 G")
        assert rows["greedy"][1].startswith("25.0 [") and rows["greedy"][2] is None
        assert "small (identity" in table.footer and "16 records" in table.footer
        markdown = table.to_markdown()
        assert "| bon (last/prm_vote) | — | 50.0 [" in markdown

    def test_small_policy_with_tts_against_a_larger_model(self, tmp_path):
        small = _write_run(tmp_path / "small-1b", _small_run_records(), name="Small-1B",
                           parameters=1_000_000_000)
        big_records = [_record(pid, "greedy", 1, k < 2, flops=100e9)
                       for k, pid in enumerate(PIDS)]
        big = _write_run(tmp_path / "big-70b", big_records, name="Big-70B",
                         parameters=70_000_000_000)
        runs = load_runs([small, big])
        table = models_table(runs, all_series(runs, difficulty_bins("none", runs)))
        rows = {(row[1], row[4]): dict(zip(table.columns, row, strict=True)) for row in table.rows}
        tts = rows[("small-1b", "bon@16")]  # 75 %: beats beam@4 and bon@4 (50 %)
        assert tts["accuracy"] == 0.75 and tts["FLOPs/problem"] == pytest.approx(10e9)
        assert tts["FLOPs ÷ reference"] == pytest.approx(0.1)
        assert tts["Δ accuracy vs reference"] == pytest.approx(0.25)
        reference = rows[("big-70b", "CoT (greedy)")]
        assert reference["FLOPs ÷ reference"] == 1.0 and reference["accuracy"] == 0.5
        assert "reference is big-70b CoT (greedy)" in table.note
        assert "small-1b (identity" in table.footer and "big-70b (identity" in table.footer
        assert "| 1B |" in table.to_markdown() and "| 0.1× |" in table.to_markdown()
        with pytest.raises(ConfigError, match="is not one of the runs"):
            models_table(runs, [], reference="nope")

    def test_ties_go_to_the_cheaper_search(self, tmp_path):
        records = [_record(pid, "bon", 4, k == 0, flops=4e9) for k, pid in enumerate(PIDS)]
        records += [_record(pid, "beam", 4, k == 1, flops=2e9) for k, pid in enumerate(PIDS)]
        run = load_run(_write_run(tmp_path / "tie", records))
        table = models_table([run], all_series([run], difficulty_bins("none", [run])))
        assert [row[4] for row in table.rows] == ["beam@4"]

    def test_compare_is_paired_over_shared_problems(self, tmp_path):
        a = _write_run(tmp_path / "prm-a", [_record(pid, "bon", 4, k < 1, flops=1e9)
                                            for k, pid in enumerate(PIDS)])
        b = _write_run(tmp_path / "prm-b", [_record(pid, "bon", 4, k < 3, flops=3e9)
                                            for k, pid in enumerate(PIDS[:3])])
        runs = load_runs([a, b])
        table = compare_table(*runs)
        (row,) = table.rows
        named = dict(zip(table.columns, row, strict=True))
        assert named["shared problems"] == 3
        assert named["accuracy A"] == pytest.approx(1 / 3) and named["accuracy B"] == 1.0
        assert named["Δ accuracy (B − A)"] == pytest.approx(2 / 3)
        assert named["FLOPs ÷ (B over A)"] == pytest.approx(3.0)
        assert named["Δ low"] <= named["Δ accuracy (B − A)"] <= named["Δ high"]

    def test_compare_without_common_ground(self, tmp_path):
        a = _write_run(tmp_path / "a", [_record(PIDS[0], "bon", 4, True)])
        b = _write_run(tmp_path / "b", [_record(PIDS[0], "beam", 4, True)])
        with pytest.raises(ConfigError, match="share no method, budget and problem"):
            compare_table(*load_runs([a, b]))


class TestViewerData:
    def test_pooled_records_share_one_node_table(self, small_run):
        run = load_run(small_run)
        data = viewer_data([run], difficulty_bins("absolute", [run]))
        assert data.index["searches"] == ["greedy@1", "bon@4", "bon@16", "beam@4"]
        first = data.index["problems"][0]
        assert first["id"] == PIDS[0] and first["bin"] == "easy"
        assert first["title"].startswith("Janet")  # the text of GSM8K test problem 0
        assert first["results"] == [{"greedy@1": 1, "bon@4": 1, "bon@16": 1, "beam@4": 1}]
        chunk = decode_chunk(data.chunks[0])
        assert chunk["reference"] == "1" and chunk["problem"].startswith("Janet")
        part = chunk["runs"][0]
        searches = {f"{s['method']}@{s['n']}": s for s in part["searches"]}
        assert searches["bon@4"]["tree"] == searches["bon@16"]["tree"]
        assert searches["beam@4"]["tree"] != searches["bon@4"]["tree"]
        assert len(part["trees"]) == 3  # greedy's empty tree, the pool, beam's own tree
        pool = part["trees"][searches["bon@16"]["tree"]]
        assert len(pool) == 1 + 16 * 2  # stored once for both budgets
        row = next(r for r in pool if r[0] == 2)
        assert row[:6] == [2, 1, 0, "f", 11, "Step 2 of sample 0: $x^1$"] and row[6] == "stop"
        bon16 = searches["bon@16"]
        scores = dict(zip(bon16["ids"], bon16["scores"], strict=True))
        assert scores[2] == pytest.approx(0.11) and scores[0] is None
        assert bon16["candidates"][0] == [2, "1", True, 0.5]

    def test_a_run_without_the_problem_is_null(self, tmp_path):
        a = _write_run(tmp_path / "a", [_record(PIDS[0], "bon", 4, True)])
        b = _write_run(tmp_path / "b", [_record(PIDS[1], "bon", 4, False)])
        runs = load_runs([a, b])
        data = viewer_data(runs, difficulty_bins("none", runs))
        assert [p["results"] for p in data.index["problems"]] == [
            [{"bon@4": 1}, None], [None, {"bon@4": 0}]]
        assert decode_chunk(data.chunks[1])["runs"][0] is None


class TestBuild:
    def test_writes_html_figures_and_tables(self, small_run, tmp_path):
        output = tmp_path / "out" / "report.html"
        files = build_report([small_run], output, formats=("png", "svg"))
        assert files.html == output and output.exists()
        names = sorted(path.name for path in files.figures + files.tables)
        assert names == ["accuracy.csv", "accuracy.md", "accuracy_vs_flops.png",
                         "accuracy_vs_flops.svg", "accuracy_vs_n.png", "accuracy_vs_n.svg",
                         "models.csv", "models.md"]
        png = next(path for path in files.figures if path.name == "accuracy_vs_n.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        rows = list(csv.DictReader((tmp_path / "out" / "report-files" / "accuracy.csv").open()))
        bon4 = next(r for r in rows if r["method"] == "bon" and r["N"] == "4"
                    and r["bin"] == "all" and r["default"] == "True")
        assert float(bon4["accuracy"]) == 0.5 and float(bon4["FLOPs/problem"]) == 2.5e9
        html = output.read_text()
        # nothing is fetched when the file is opened: no external script, style or font
        assert not re.search(r"<script[^>]+src=", html) and "<link" not in html
        assert html.count('type="application/x-ttscale-problem"') == 4
        assert "data:font/woff2;base64," in html and "url(fonts/" not in html
        figures = json.loads(re.search(r'id="ttscale-figures">(.*?)</script>', html,
                                       re.S).group(1))
        assert [f["name"] for f in figures] == ["accuracy_vs_n", "accuracy_vs_flops"]
        assert figures[0]["layout"]["xaxis"]["type"] == "log"

    def test_text_from_records_cannot_end_a_script(self, tmp_path):
        records = [_record("p</script><script>alert(1)</script>", "bon", 4, True,
                           tree=_chain_tree(4))]
        records[0]["tree"][1]["text"] = "</script><img src=x onerror=alert(1)>"
        run = _write_run(tmp_path / "evil", records)
        output = tmp_path / "evil.html"
        build_report([run], output, formats=())
        html = output.read_text()
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "p\\u003c/script\\u003e\\u003cscript\\u003ealert(1)" in html

    def test_bad_records_are_reported_and_skipped(self, tmp_path):
        good = _small_run_records()
        folder = _write_run(tmp_path / "r", good, extra_lines=[
            "{not json", json.dumps({"key": "x|bon|4"}), json.dumps(good[0])])
        files = build_report([folder], tmp_path / "r.html", formats=())
        assert len(files.warnings) == 3
        assert "line 17: not valid JSON" in files.warnings[0]
        assert "record x|bon|4: no problem_id" in files.warnings[1]
        assert "a second copy of this key" in files.warnings[2]
        assert "3 skipped" in (tmp_path / "r-files" / "models.md").read_text()

    @pytest.mark.parametrize(("args", "message"), [
        ({"formats": ("gif",)}, "unknown figure format 'gif'"),
        ({"compare": True}, "--compare takes exactly two runs (got 1)"),
        ({"output_name": "report.txt"}, "give -o a path ending in .html"),
    ])
    def test_bad_options(self, small_run, tmp_path, args, message):
        output = tmp_path / args.pop("output_name", "r.html")
        with pytest.raises(ConfigError) as error:
            build_report([small_run], output, **args)
        assert message in str(error.value)

    def test_folders_that_are_not_runs(self, tmp_path, small_run):
        with pytest.raises(ConfigError, match="is not a folder"):
            load_runs([tmp_path / "missing"])
        (tmp_path / "empty").mkdir()
        with pytest.raises(ConfigError, match="has no records.jsonl"):
            load_runs([tmp_path / "empty"])
        _write_run(tmp_path / "blank", [])
        with pytest.raises(ConfigError, match="holds no usable record"):
            load_runs([tmp_path / "blank"])
        with pytest.raises(ConfigError, match="given twice"):
            load_runs([small_run, small_run])


def _run_over_flops(folder, low: float, high: float, budgets=(1, 2, 4, 8, 16)):
    """Three problems, BoN at each budget, FLOPs per problem spread evenly in log from
    ``low`` at the smallest budget to ``high`` at the largest."""
    steps = len(budgets) - 1
    records = [_record(f"p{k}", "bon", n, k <= i % 3, pool=budgets[-1],
                       flops=low * (high / low) ** (i / steps), candidates_right=min(n, k + 1),
                       tree=_chain_tree(budgets[-1]))
               for k in range(3) for i, n in enumerate(budgets)]
    for record in records:  # all policy FLOPs: the pass@N and majority@N lines span as much
        record["ledger"].update(policy_flops=record["ledger"]["total_flops"], scorer_flops=0)
    return _write_run(folder, records)


def _x_tick_labels(figure):
    """(text, window box) of each labelled x tick of each facet, after drawing; and the
    minor ticks' texts."""
    import matplotlib.pyplot as plt

    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        facets = []
        for ax in figure.axes:
            low, high = ax.get_xlim()
            shown = [label for label in ax.xaxis.get_ticklabels()
                     if label.get_visible() and label.get_text()
                     and low <= label.get_position()[0] <= high]
            facets.append(([(label.get_text(), label.get_window_extent(renderer))
                            for label in shown],
                           [label.get_text() for label in
                            ax.xaxis.get_ticklabels(minor=True) if label.get_visible()]))
        return facets
    finally:
        plt.close(figure)


class TestStaticFigures:
    """The log x axes of the PNG/SVG figures stay readable from a factor of 1.5 to 10^6:
    2 to 6 labels, none overlapping, none at minor ticks, in short SI units."""

    @pytest.mark.parametrize(("low", "high", "expect"), [
        (1.5e11, 4e11, "200 G"),   # narrow: matplotlib's own labels were 2×10^11, 3×10^11
        (2e11, 3e11, "240 G"),     # a factor of 1.5: round linear steps
        (1e10, 1e11, "20 G"),      # one decade
        (1e9, 1e15, "1 T"),        # six decades
    ])
    def test_flops_axis_labels_do_not_overlap(self, tmp_path, low, high, expect):
        run = load_run(_run_over_flops(tmp_path / "r", low, high))
        bins = difficulty_bins("none", [run])
        figure = draw_static(all_series([run], bins), "flops", bins.facets())
        for labels, minor in _x_tick_labels(figure):
            texts = [text for text, _ in labels]
            assert 2 <= len(labels) <= 6, texts
            assert expect in texts
            assert all(re.fullmatch(r"\d+(\.\d+)? [kMGTP]", text) for text in texts), texts
            assert not any(minor), minor
            boxes = sorted((box for _, box in labels), key=lambda box: box.x0)
            for left, right in zip(boxes, boxes[1:], strict=False):
                assert not left.overlaps(right) and right.x0 - left.x1 > 5, texts

    def test_budget_axis_labels_are_a_few_integers(self, tmp_path):
        budgets = tuple(2 ** k for k in range(13))  # 1 .. 4096: 13 powers of 2
        run = load_run(_run_over_flops(tmp_path / "r", 1e9, 4e12, budgets))
        bins = difficulty_bins("none", [run])
        figure = draw_static(all_series([run], bins), "n", bins.facets())
        [(labels, minor)] = _x_tick_labels(figure)
        assert [text for text, _ in labels] == ["1", "8", "64", "512", "4096"]
        assert not any(minor)
        boxes = [box for _, box in labels]
        assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:], strict=False))
        # the HTML figure labels as many: every third power of 2
        layout = plotly_figure(all_series([run], bins), "n", bins.facets())["layout"]
        assert layout["xaxis"]["dtick"] == pytest.approx(3 * 0.30103, rel=1e-4)

    def test_a_study_of_many_methods_draws_no_two_lines_alike_and_its_whole_legend(self):
        """Fourteen methods over two runs (a method study): more lines than colours."""
        import matplotlib.pyplot as plt

        from ttscale.report.curves import Point, Series
        from ttscale.search import METHODS

        def line(run, method, k):
            points = tuple(Point(n, 10, bootstrap_mean([k % 2] * 10), 1e9 * n * (1 + k / 10))
                           for n in (4, 16))
            return Series(run, method, "min/prm_vote", True, ALL, points)

        methods = [m for m in METHODS if m != "auto"][:14]
        series = [line(run, method, k) for run in ("level-1-none", "level-1-grounded")
                  for k, method in enumerate(methods)]
        series += [Series("level-1-none", ref, "-", True, ALL, series[0].points)
                   for ref in (PASS, MAJORITY)]
        figure = draw_static(series, "flops", (ALL,))
        try:
            figure.canvas.draw()
            renderer = figure.canvas.get_renderer()
            drawn = [(ln.get_color(), ln.get_marker()) for ln in figure.axes[0].lines
                     if ln.get_linestyle() == "-"]
            assert len(drawn) == 28 and len(set(drawn)) == 28
            [legend] = figure.legends
            assert len(legend.get_texts()) == 30
            box, axes = legend.get_window_extent(renderer), figure.axes[0]
            assert box.y0 >= 0 and box.y1 <= axes.get_tightbbox(renderer).y0  # below the plot
        finally:
            plt.close(figure)

    @pytest.mark.parametrize("factor", [1.5, 2, 3, 5, 10, 30, 100, 1e3, 1e4, 1e5, 1e6])
    @pytest.mark.parametrize("low", [1e9, 1.5e11, 3.7e10, 6e11])
    def test_locator_keeps_a_few_spread_ticks(self, factor, low):
        import math

        from ttscale.report.ticks import ReadableLogLocator

        margin = factor ** 0.05  # matplotlib's default 5% margins on a log axis
        view = (low / margin, low * factor * margin)
        ticks = ReadableLogLocator().tick_values(*view)
        assert 3 <= len(ticks) <= 6, ticks
        assert all(view[0] <= tick <= view[1] for tick in ticks)
        span = math.log(view[1] / view[0])
        assert min(math.log(b / a) for a, b in zip(ticks, ticks[1:], strict=False)) >= span / 7

    @pytest.mark.parametrize(("value", "label"), [
        (2e10, "20 G"), (2e11, "200 G"), (2e12, "2 T"), (1.5e12, "1.5 T"), (1.25e11, "125 G"),
        (1e15, "1 P"), (250, "250"), (1e3, "1 k"), (1e27, "$10^{27}$")])
    def test_si_labels(self, value, label):
        from ttscale.report.ticks import si_label

        assert si_label(value) == label


class TestCli:
    def test_report_command(self, small_run, tmp_path):
        output = tmp_path / "r.html"
        result = CliRunner().invoke(app, ["report", str(small_run), "-o", str(output),
                                          "--format", "svg", "--bins", "quantile:2"])
        assert result.exit_code == 0, result.output
        assert f"report: {output}" in result.output
        assert (tmp_path / "r-files" / "accuracy_vs_flops.svg").exists()
        assert "level1 problems" in (tmp_path / "r-files" / "accuracy.md").read_text()

    def test_compare_command(self, tmp_path):
        a = _write_run(tmp_path / "a", _small_run_records())
        b = _write_run(tmp_path / "b", _small_run_records(), scorer="arith")
        output = tmp_path / "c.html"
        result = CliRunner().invoke(app, ["report", "--compare", str(a), str(b), "-o",
                                          str(output), "--format", "none"])
        assert result.exit_code == 0, result.output
        compared = (tmp_path / "c-files" / "compare.md").read_text()
        assert "A = a against B = b" in compared
        assert 'right in A, wrong in B' in output.read_text()  # the viewer's compare filter

    def test_missing_folder_is_one_clear_line(self, tmp_path):
        result = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "-o",
                                          str(tmp_path / "r.html")])
        assert result.exit_code == 2
        assert "is not a folder" in result.output and "Traceback" not in result.output
