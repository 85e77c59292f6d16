/* ttscale report: curves, tables and the search-tree viewer.
   Model text is only ever set with textContent (never parsed as HTML); KaTeX renders math in
   text nodes with its default trust:false. Problem data is decoded only when opened. */
(function () {
  "use strict";

  var INDEX = JSON.parse(document.getElementById("ttscale-index").textContent);
  var FIGURES = JSON.parse(document.getElementById("ttscale-figures").textContent);
  var STATUS = { o: "open", k: "kept", p: "pruned", f: "finished", t: "truncated" };
  var CHILD_PAGE = 100;
  var CACHE_LIMIT = 24;
  var cache = new Map();
  var filtered = [];
  var current = -1;
  var openCount = 0;
  var state = { search: {} }; // run index -> chosen search label

  window.ttscaleReport = { ready: false, timings: {}, openProblem: openProblem };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmtScore(value) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(3);
  }

  function fmtFlops(value) {
    if (value === null || value === undefined) return "n/a";
    var units = [["P", 1e15], ["T", 1e12], ["G", 1e9], ["M", 1e6]];
    for (var i = 0; i < units.length; i++) {
      if (value >= units[i][1]) return (value / units[i][1]).toFixed(2) + " " + units[i][0];
    }
    return String(Math.round(value));
  }

  // ---- math ------------------------------------------------------------------------------
  var DOLLAR_MATH = /\$[^$\n]*[\\^_{][^$\n]*\$/; // $...$ that holds markup, not prices

  // \boxed{...} written outside any math delimiters (as small models do) is still math
  function wrapBoxed(text) {
    if (text.indexOf("\\boxed{") < 0 || /\$|\\\(|\\\[/.test(text)) return text;
    var out = "", at = 0, start;
    while ((start = text.indexOf("\\boxed{", at)) >= 0) {
      var depth = 0, end = -1;
      for (var i = start + 6; i < text.length; i++) {
        if (text[i] === "{") depth++;
        else if (text[i] === "}" && --depth === 0) { end = i; break; }
      }
      if (end < 0) break;
      out += text.slice(at, start) + "\\(" + text.slice(start, end + 1) + "\\)";
      at = end + 1;
    }
    return out + text.slice(at);
  }

  function renderMath(node) {
    if (typeof window.renderMathInElement !== "function") return;
    var wrapped = wrapBoxed(node.textContent);
    if (wrapped !== node.textContent) node.textContent = wrapped;
    var text = node.textContent;
    if (text.indexOf("\\") < 0 && text.indexOf("$") < 0) return;
    var delimiters = [
      { left: "$$", right: "$$", display: true },
      { left: "\\[", right: "\\]", display: true },
      { left: "\\(", right: "\\)", display: false }
    ];
    if (DOLLAR_MATH.test(text)) delimiters.push({ left: "$", right: "$", display: false });
    try {
      window.renderMathInElement(node, { delimiters: delimiters, throwOnError: false });
    } catch (error) { /* leave the raw text readable */ }
  }

  // ---- tabs ------------------------------------------------------------------------------
  function showTab(name) {
    document.querySelectorAll("[data-tab]").forEach(function (button) {
      var on = button.getAttribute("data-tab") === name;
      button.setAttribute("aria-selected", on ? "true" : "false");
      document.getElementById("tab-" + button.getAttribute("data-tab")).hidden = !on;
    });
    if (name === "curves" && window.Plotly) {
      document.querySelectorAll(".figure").forEach(function (div) {
        if (div.data) window.Plotly.Plots.resize(div);
      });
    }
  }

  function drawFigures() {
    var started = performance.now();
    var host = document.getElementById("figures");
    var pending = FIGURES.map(function (figure, i) {
      var div = el("div", "figure");
      div.id = "figure-" + i;
      host.appendChild(div);
      if (!window.Plotly) {
        div.textContent = "plotly.js did not load: the curves cannot be drawn.";
        return Promise.resolve();
      }
      return window.Plotly.newPlot(div, figure.data, figure.layout, {
        responsive: true, displaylogo: false,
        toImageButtonOptions: { format: "svg", filename: figure.name || ("figure-" + i) }
      }).then(function () { div.setAttribute("data-drawn", "1"); });
    });
    return Promise.all(pending).then(function () {
      window.ttscaleReport.timings.figuresMs = performance.now() - started;
    });
  }

  // ---- problem data ----------------------------------------------------------------------
  function base64Bytes(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function loadProblem(i) {
    if (cache.has(i)) return Promise.resolve(cache.get(i));
    var holder = document.getElementById("c" + i);
    if (!holder) return Promise.reject(new Error("problem data " + i + " is missing"));
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser cannot decompress (no DecompressionStream)"));
    }
    var stream = new Blob([base64Bytes(holder.textContent.trim())]).stream()
      .pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(function (text) {
      var data = JSON.parse(text);
      cache.set(i, data);
      if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value);
      return data;
    });
  }

  // ---- problem list ----------------------------------------------------------------------
  function resultOf(problem, run, label) {
    var results = problem.results[run];
    if (!results || !(label in results)) return undefined;
    return results[label];
  }

  function applyFilter() {
    var mode = document.getElementById("filter-outcome").value;
    var label = document.getElementById("filter-search").value;
    var bin = document.getElementById("filter-bin").value;
    var query = document.getElementById("filter-text").value.trim().toLowerCase();
    filtered = [];
    INDEX.problems.forEach(function (problem, i) {
      if (bin && problem.bin !== bin) return;
      if (query && (problem.id + " " + problem.title).toLowerCase().indexOf(query) < 0) return;
      var outcomes = INDEX.runs.map(function (_, run) { return resultOf(problem, run, label); });
      var known = outcomes.filter(function (v) { return v !== undefined; });
      var keep = true;
      if (mode === "right") keep = known.length > 0 && known.every(function (v) { return v === 1; });
      else if (mode === "wrong") keep = known.length > 0 && known.every(function (v) { return v === 0; });
      else if (mode === "a-only") keep = outcomes[0] === 1 && outcomes[1] === 0;
      else if (mode === "b-only") keep = outcomes[0] === 0 && outcomes[1] === 1;
      if (keep) filtered.push(i);
    });
    renderList(label);
  }

  function renderList(label) {
    var list = document.getElementById("problems");
    list.textContent = "";
    var fragment = document.createDocumentFragment();
    filtered.forEach(function (i, position) {
      var problem = INDEX.problems[i];
      var item = el("li", "problem-item");
      item.setAttribute("data-index", String(i));
      item.setAttribute("role", "option");
      var marks = el("span", "marks");
      INDEX.runs.forEach(function (_, run) {
        var value = resultOf(problem, run, label);
        marks.appendChild(el("span", value === 1 ? "mark right" : value === 0 ? "mark wrong" : "mark none",
          value === 1 ? "✓" : value === 0 ? "✗" : "·"));
      });
      item.appendChild(marks);
      item.appendChild(el("span", "problem-id", problem.id));
      if (problem.bin) item.appendChild(el("span", "bin bin-" + problem.bin, problem.bin));
      item.appendChild(el("span", "problem-title", problem.title));
      item.addEventListener("click", function () { openAt(position); });
      if (i === current) item.classList.add("current");
      fragment.appendChild(item);
    });
    list.appendChild(fragment);
    document.getElementById("list-count").textContent =
      filtered.length + " of " + INDEX.problems.length + " problems";
  }

  function openAt(position) {
    if (position < 0 || position >= filtered.length) return;
    openProblem(filtered[position]);
  }

  function move(step) {
    if (!filtered.length) return;
    var position = filtered.indexOf(current);
    openAt(position < 0 ? 0 : Math.min(filtered.length - 1, Math.max(0, position + step)));
  }

  // ---- one problem -----------------------------------------------------------------------
  function openProblem(i) {
    var started = performance.now();
    current = i;
    document.querySelectorAll(".problem-item").forEach(function (item) {
      var on = Number(item.getAttribute("data-index")) === i;
      item.classList.toggle("current", on);
      if (on) item.scrollIntoView({ block: "nearest" });
    });
    var view = document.getElementById("problem-view");
    var token = ++openCount;  // keys pressed quickly: only the last problem asked for is drawn
    view.setAttribute("aria-busy", "true");
    return loadProblem(i).then(function (data) {
      if (token !== openCount) return data;
      renderProblem(view, data);
      view.setAttribute("aria-busy", "false");
      window.ttscaleReport.timings.openMs = performance.now() - started;
      return data;
    }, function (error) {
      if (token !== openCount) return;
      view.textContent = "";
      view.appendChild(el("p", "error", String(error.message || error)));
      view.setAttribute("aria-busy", "false");
    });
  }

  function renderProblem(view, data) {
    view.textContent = "";
    var head = el("h2", "problem-head", data.id);
    if (data.bin) head.appendChild(el("span", "bin bin-" + data.bin, data.bin));
    if (data.level !== null && data.level !== undefined) head.appendChild(el("span", "level", "level " + data.level));
    view.appendChild(head);
    var statement = el("div", "problem-text", data.problem || "(problem text not available)");
    view.appendChild(statement);
    renderMath(statement);
    var reference = el("div", "reference");
    reference.appendChild(el("span", "label", "reference answer "));
    var referenceValue = el("span", "answer", data.reference);
    reference.appendChild(referenceValue);
    view.appendChild(reference);
    var columns = el("div", "run-columns");
    columns.style.gridTemplateColumns = "repeat(" + data.runs.length + ", minmax(0, 1fr))";
    data.runs.forEach(function (part, run) {
      var column = el("section", "run-column");
      var info = INDEX.runs[run];
      column.appendChild(el("h3", "run-head", (INDEX.runs.length > 1 ? String.fromCharCode(65 + run) + " · " : "")
        + info.id + " · " + info.policy + (info.scorer ? " · " + info.scorer : "")));
      if (!part) {
        column.appendChild(el("p", "note", "this run has no record of this problem"));
      } else {
        renderRun(column, part, run);
      }
      columns.appendChild(column);
    });
    view.appendChild(columns);
  }

  function renderRun(column, part, run) {
    var tabs = el("div", "search-tabs");
    tabs.setAttribute("role", "tablist");
    var body = el("div", "search-body");
    var wanted = state.search[run] || document.getElementById("filter-search").value;
    var chosen = part.searches.findIndex(function (s) { return s.method + "@" + s.n === wanted; });
    if (chosen < 0) chosen = 0;
    part.searches.forEach(function (search, k) {
      var label = search.method + "@" + search.n;
      var button = el("button", "search-tab " + (search.correct ? "right" : "wrong"),
        label + (search.correct ? " ✓" : " ✗"));
      button.setAttribute("role", "tab");
      button.setAttribute("data-search", label);
      button.addEventListener("click", function () {
        state.search[run] = label;
        selectSearch(tabs, body, part, k);
      });
      tabs.appendChild(button);
    });
    column.appendChild(tabs);
    column.appendChild(body);
    selectSearch(tabs, body, part, chosen);
  }

  function selectSearch(tabs, body, part, k) {
    tabs.querySelectorAll(".search-tab").forEach(function (button, j) {
      button.setAttribute("aria-selected", j === k ? "true" : "false");
    });
    body.textContent = "";
    renderSearch(body, part, part.searches[k]);
  }

  function summaryLine(search) {
    var parts = [search.method + " N=" + search.n];
    if (search.width) parts.push("width " + search.width);
    if (search.scorer) parts.push("scorer " + search.scorer);
    if (search.aggregation) parts.push("aggregation " + search.aggregation);
    parts.push(fmtFlops(search.flops) + " FLOPs");
    if (search.tokens !== null && search.tokens !== undefined) parts.push(search.tokens + " tokens generated");
    if (search.seconds !== null && search.seconds !== undefined) parts.push(Number(search.seconds).toFixed(1) + " s");
    return parts.join(" · ");
  }

  function renderSearch(body, part, search) {
    var answer = el("div", "chosen " + (search.correct ? "right" : "wrong"));
    answer.appendChild(el("span", "label", "chosen answer "));
    answer.appendChild(el("span", "answer", search.answer === null ? "(none)" : search.answer));
    answer.appendChild(el("span", "verdict", search.correct ? " ✓ right" : " ✗ wrong"));
    if (!search.correct && search.pass) answer.appendChild(el("span", "note", " (a right answer was among the candidates)"));
    body.appendChild(answer);
    body.appendChild(el("div", "search-summary", summaryLine(search)));
    if (search.plan) {
      var plan = search.plan;
      var probe = plan.probe || {};
      body.appendChild(el("div", "plan-line", "planner (" + (plan.plan || plan.source) + "): predicted " +
        plan.predicted_bin + (probe.samples ? " from a probe of " + probe.samples + " samples (agreement " +
        fmtScore(probe.agreement) + ")" : "") + " → " + plan.method + "@" + plan.n +
        (plan.reason ? " · " + plan.reason : "")));
    }
    if (search.note) body.appendChild(el("div", "plan-line", search.method + ": " + search.note));
    var tree = buildTree(part.trees[search.tree], search);
    var container = el("ul", "tree");
    container.setAttribute("role", "tree");
    body.appendChild(el("div", "tree-help", tree.count + " nodes · " + search.candidates.length +
      " candidates · click a step to open it, shift-click to open everything under it"));
    body.appendChild(container);
    if (tree.root) {
      renderChildren(container, tree, tree.root);
      if (tree.chosenPath.length) expandPath(container, tree, tree.chosenPath);
    }
  }

  function buildTree(rows, search) {
    var wanted = new Map();
    search.ids.forEach(function (id, k) { wanted.set(id, search.scores[k]); });
    var nodes = new Map();
    rows.forEach(function (row) {
      if (!wanted.has(row[0])) return;
      nodes.set(row[0], { id: row[0], parent: row[1], group: row[2], status: row[3], tokens: row[4],
        text: row[5], finish: row[6] || null, thought: !!(row[7] && row[7].thought),
        thinking: (row[7] && row[7].thinking) || null, score: wanted.get(row[0]), children: [] });
    });
    var root = null;
    nodes.forEach(function (node) {
      if (node.parent === null || !nodes.has(node.parent)) { if (node.parent === null) root = node; }
      else nodes.get(node.parent).children.push(node);
    });
    var candidates = new Map();
    search.candidates.forEach(function (c, k) {
      candidates.set(c[0], { index: k, answer: c[1], correct: c[2], score: c[3], chosen: k === search.selected });
    });
    // the one candidate a subtree leads to (a Best-of-N sample is a chain): shown on its
    // first row, so a closed tree still says where each branch ends
    var stack = root ? [[root, false]] : [];
    while (stack.length) {
      var top = stack.pop();
      var item = top[0];
      if (!top[1]) {
        stack.push([item, true]);
        item.children.forEach(function (child) { stack.push([child, false]); });
        continue;
      }
      var own = candidates.get(item.id);
      var below = own ? [own] : [];
      for (var c = 0; c < item.children.length && below.length < 2; c++) {
        below = below.concat(item.children[c].leads || []);
      }
      item.leads = below.slice(0, 2);
    }
    var chosenPath = [];
    var selected = search.candidates[search.selected];
    if (selected) {
      var cursor = nodes.get(selected[0]);
      while (cursor && cursor.parent !== null) { chosenPath.unshift(cursor.id); cursor = nodes.get(cursor.parent); }
    }
    return { nodes: nodes, root: root, candidates: candidates, chosenPath: chosenPath, count: nodes.size - (root ? 1 : 0) };
  }

  // how a thought ended: closed by the model, cut by the thinking budget, or an early exit
  function thinkingEnd(thinking) {
    var tokens = thinking.thought_tokens + " thought tok";
    if (thinking.end === "budget") return "thought cut by the budget at " + tokens;
    if (thinking.end === "early_exit") {
      return "early exit after " + thinking.probes.length + " probes (" + thinking.probe_tokens +
        " tok) at " + tokens;
    }
    if (thinking.end === "closed") return "thought closed at " + tokens;
    return "thought never closed (" + tokens + ")";
  }

  function nodeItem(tree, node) {
    var item = el("li", "node status-" + (STATUS[node.status] || "open"));
    item.setAttribute("role", "treeitem");
    item.setAttribute("data-node", String(node.id));
    var row = el("div", "node-row");
    row.tabIndex = -1;
    var hasChildren = node.children.length > 0;
    var toggle = el("span", "toggle", hasChildren ? "▸" : "•");
    row.appendChild(toggle);
    row.appendChild(el("span", "badge status", STATUS[node.status] || node.status));
    var score = el("span", "score", fmtScore(node.score));
    score.setAttribute("data-score", node.score === null || node.score === undefined ? "" : String(node.score));
    score.title = "scorer's score of this step";
    row.appendChild(score);
    if (node.group) row.appendChild(el("span", "badge group", "subtree " + node.group));
    row.appendChild(el("span", "tokens", node.tokens + " tok"));
    if (node.finish && node.finish !== "stop") row.appendChild(el("span", "badge finish", node.finish));
    if (node.thinking) row.appendChild(el("span", "badge thinking", thinkingEnd(node.thinking)));
    var text = el("span", "step-text clipped", node.text);
    var shown = text;  // what the row shows: the text, or a thought's fold around it
    if (node.thought) {
      // a reasoning policy's thought: folded away, its size on the fold
      item.classList.add("thought");
      var fold = el("details", "thought-fold");
      fold.appendChild(el("summary", "thought-summary", "thought · " + node.tokens + " tok"));
      text.classList.remove("clipped");
      fold.appendChild(text);
      fold.addEventListener("click", function (event) { event.stopPropagation(); });
      row.appendChild(fold);
      shown = fold;
    } else {
      row.appendChild(text);
    }
    var candidate = tree.candidates.get(node.id);
    if (!candidate && node.leads && node.leads.length === 1) {
      var lead = node.leads[0];
      row.insertBefore(el("span", "leads " + (lead.correct ? "right" : "wrong"),
        "leads to " + (lead.answer === null ? "no answer" : lead.answer) + (lead.correct ? " ✓" : " ✗") +
        " · solution score " + fmtScore(lead.score) + (lead.chosen ? " ★ chosen" : "")), shown);
    }
    if (candidate) {
      var end = el("span", "candidate " + (candidate.correct ? "right" : "wrong"),
        "→ " + (candidate.answer === null ? "no answer" : candidate.answer) + (candidate.correct ? " ✓" : " ✗") +
        " · solution score " + fmtScore(candidate.score) + (candidate.chosen ? " ★ chosen" : ""));
      if (candidate.chosen) item.classList.add("chosen-leaf");
      row.insertBefore(end, shown);
    }
    item.appendChild(row);
    if (hasChildren) item.setAttribute("aria-expanded", "false");
    row.addEventListener("click", function (event) {
      if (event.target === text && text.classList.contains("clipped") && text.scrollHeight > text.clientHeight + 2) {
        text.classList.remove("clipped");
        return;
      }
      if (event.shiftKey) expandAll(item, tree, node); else toggleNode(item, tree, node);
      row.focus();
    });
    item._node = node;
    item._tree = tree;
    queueMath(text);
    return item;
  }

  var mathQueue = [];
  function queueMath(node) {
    mathQueue.push(node);
    if (mathQueue.length === 1) requestAnimationFrame(flushMath);
  }
  function flushMath() {
    var batch = mathQueue.splice(0, 200);
    batch.forEach(renderMath);
    if (mathQueue.length) requestAnimationFrame(flushMath);
  }

  function renderChildren(container, tree, node, from) {
    var start = from || 0;
    var end = Math.min(node.children.length, start + CHILD_PAGE);
    var fragment = document.createDocumentFragment();
    for (var k = start; k < end; k++) fragment.appendChild(nodeItem(tree, node.children[k]));
    if (end < node.children.length) {
      var more = el("li", "more");
      var button = el("button", "more-button", "show " + Math.min(CHILD_PAGE, node.children.length - end) +
        " more of " + (node.children.length - end) + " remaining");
      button.addEventListener("click", function () {
        more.remove();
        renderChildren(container, tree, node, end);
      });
      more.appendChild(button);
      fragment.appendChild(more);
    }
    container.appendChild(fragment);
  }

  function toggleNode(item, tree, node, open) {
    if (!node.children.length) return;
    var expanded = item.getAttribute("aria-expanded") === "true";
    var want = open === undefined ? !expanded : open;
    if (want === expanded) return;
    item.setAttribute("aria-expanded", want ? "true" : "false");
    item.querySelector(":scope > .node-row > .toggle").textContent = want ? "▾" : "▸";
    var group = item.querySelector(":scope > ul");
    if (want && !group) {
      group = el("ul", "children");
      group.setAttribute("role", "group");
      renderChildren(group, tree, node);
      item.appendChild(group);
    }
    if (group) group.hidden = !want;
  }

  function expandAll(item, tree, node) {
    var pending = [[item, node]];
    var budget = 2000; // nodes opened at once, so a shift-click on a huge tree cannot freeze
    while (pending.length && budget > 0) {
      var next = pending.shift();
      toggleNode(next[0], tree, next[1], true);
      budget -= 1;
      var group = next[0].querySelector(":scope > ul");
      if (!group) continue;
      group.querySelectorAll(":scope > li.node").forEach(function (child) {
        pending.push([child, child._node]);
      });
    }
  }

  function expandPath(container, tree, path) {
    var scope = container;
    for (var k = 0; k < path.length; k++) {
      var selector = ':scope > li.node[data-node="' + path[k] + '"]';
      var item = scope.querySelector(selector);
      var more;
      // the chosen branch may sit past the first page of a wide node's children
      while (!item && (more = scope.querySelector(":scope > li.more > .more-button"))) {
        more.click();
        item = scope.querySelector(selector);
      }
      if (!item) return;
      if (k < path.length - 1) toggleNode(item, tree, item._node, true);
      scope = item.querySelector(":scope > ul") || scope;
    }
  }

  // ---- keyboard --------------------------------------------------------------------------
  // rows not inside a closed branch, found from the DOM's structure (asking the layout,
  // e.g. offsetParent, would lay out every row of a large open tree)
  function visibleRows() {
    return Array.prototype.filter.call(document.querySelectorAll("#problem-view .node-row"), function (row) {
      return !row.closest("ul[hidden], .search-body[hidden]");
    });
  }

  function onKey(event) {
    var target = event.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
    if (event.key === "Escape") { document.getElementById("help").hidden = true; if (typing) target.blur(); return; }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    var inTree = target && target.classList && target.classList.contains("node-row");
    if (inTree && ["ArrowDown", "ArrowUp", "ArrowRight", "ArrowLeft", "Enter", " ", "e"].indexOf(event.key) >= 0) {
      var item = target.parentElement;
      var rows = visibleRows();
      var position = rows.indexOf(target);
      if (event.key === "ArrowDown" && position + 1 < rows.length) rows[position + 1].focus();
      else if (event.key === "ArrowUp" && position > 0) rows[position - 1].focus();
      else if (event.key === "ArrowRight") {
        if (item.getAttribute("aria-expanded") === "true") {
          var first = item.querySelector(":scope > ul > li.node > .node-row");
          if (first) first.focus();
        } else toggleNode(item, item._tree, item._node, true);
      } else if (event.key === "ArrowLeft") {
        if (item.getAttribute("aria-expanded") === "true") toggleNode(item, item._tree, item._node, false);
        else {
          var parent = item.parentElement.closest("li.node");
          if (parent) parent.querySelector(":scope > .node-row").focus();
        }
      } else if (event.key === "e") expandAll(item, item._tree, item._node);
      else toggleNode(item, item._tree, item._node);
      event.preventDefault();
      return;
    }
    var key = event.key;
    if (key === "j" || (key === "ArrowDown" && !inTree)) { move(1); event.preventDefault(); }
    else if (key === "k" || (key === "ArrowUp" && !inTree)) { move(-1); event.preventDefault(); }
    else if (key === "t") { var rows2 = visibleRows(); if (rows2.length) rows2[0].focus(); event.preventDefault(); }
    else if (key === "n" || key === "p") { cycleSearch(key === "n" ? 1 : -1); event.preventDefault(); }
    else if (key === "/") { showTab("trees"); document.getElementById("filter-text").focus(); event.preventDefault(); }
    else if (key === "?") { document.getElementById("help").hidden = !document.getElementById("help").hidden; }
    else if (key === "1" || key === "2" || key === "3") { showTab(["curves", "tables", "trees"][Number(key) - 1]); }
  }

  function cycleSearch(step) {
    document.querySelectorAll(".run-column").forEach(function (column) {
      var tabs = Array.prototype.slice.call(column.querySelectorAll(".search-tab"));
      if (!tabs.length) return;
      var at = tabs.findIndex(function (tab) { return tab.getAttribute("aria-selected") === "true"; });
      tabs[(at + step + tabs.length) % tabs.length].click();
    });
  }

  // ---- start -----------------------------------------------------------------------------
  function setUpControls() {
    var searchSelect = document.getElementById("filter-search");
    INDEX.searches.forEach(function (label) { searchSelect.appendChild(new Option(label, label)); });
    var preferred = INDEX.searches.filter(function (l) { return !/^(greedy|majority)@/.test(l); });
    if (preferred.length) searchSelect.value = preferred[preferred.length - 1];
    var binSelect = document.getElementById("filter-bin");
    INDEX.bins.forEach(function (name) { binSelect.appendChild(new Option(name + " problems", name)); });
    binSelect.hidden = INDEX.bins.length === 0;
    var outcome = document.getElementById("filter-outcome");
    if (INDEX.runs.length === 2) {
      outcome.appendChild(new Option("right in A, wrong in B", "a-only"));
      outcome.appendChild(new Option("wrong in A, right in B", "b-only"));
    }
    ["filter-outcome", "filter-search", "filter-bin"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", function () {
        state.search = {};
        applyFilter();
        if (current >= 0) openProblem(current);
      });
    });
    var typing = null;  // filter once typing pauses, not at every key
    document.getElementById("filter-text").addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(applyFilter, 120);
    });
    document.getElementById("filter-text").addEventListener("change", function () {
      clearTimeout(typing);  // Enter or leaving the box: at once
      applyFilter();
    });
    document.querySelectorAll("[data-tab]").forEach(function (button) {
      button.addEventListener("click", function () { showTab(button.getAttribute("data-tab")); });
    });
    document.addEventListener("keydown", onKey);
  }

  function start() {
    var started = performance.now();
    setUpControls();
    applyFilter();
    showTab("curves");
    drawFigures().then(function () {
      window.ttscaleReport.timings.startMs = performance.now() - started;
      window.ttscaleReport.ready = true;
      document.body.setAttribute("data-ready", "1");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
