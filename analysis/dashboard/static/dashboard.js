// The dashboard page: polls the server's JSON endpoints and draws with Plotly (served from the plotly
// Python package). Every run id, path and configuration value is written with textContent, or escaped
// before it reaches Plotly's hover text: nothing from a run is ever parsed as HTML.
"use strict";

const state = {
  pollMilliseconds: 500,
  rule: "max-budget",
  runId: null,
  versions: {},        // run id -> version last drawn
  cursor: 0,
  origin: null,
  rows: [],
  parameters: [],
  sort: { key: "index", descending: false },
  filters: {},
  selectedConfig: null,
  chartsDrawnAt: 0,
  chartMilliseconds: 2000,
  importanceAt: 0,
  importanceVersion: null,
  polling: false,
  pollAgain: false,
  compareKey: "",
  tableDirty: false,
};
const ROW_LIMIT = 500;
const CHART_MILLISECONDS = 2000;
const CHART_MAX_MILLISECONDS = 10000;
const IMPORTANCE_MILLISECONDS = 20000;
const PLOT_CONFIG = { displaylogo: false, responsive: true };
// Plotly (4.8 MB, most of a second of the page's time to parse) loads after the first poll has drawn the
// runs and the jobs table: they do not wait for it, the charts do.
let plotlyLoading = null;

function loadPlotly() {
  plotlyLoading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/static/plotly.min.js";
    script.onload = resolve;
    script.onerror = () => reject(new Error("cannot load /static/plotly.min.js"));
    document.head.appendChild(script);
  });
  return plotlyLoading;
}

const nextTask = () => new Promise((resolve) => setTimeout(resolve));

function escapeHtml(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 1000 || Math.abs(value) < 0.001 ? value.toPrecision(3) : value.toFixed(4);
  }
  return String(value);
}

function configText(config) {
  return Object.keys(config || {}).sort().map((key) => `${key}: ${formatValue(config[key])}`).join("\n");
}

function hoverConfig(config) {
  return escapeHtml(configText(config)).replace(/\n/g, "<br>");
}

async function getJson(path, parameters) {
  const query = new URLSearchParams(parameters || {}).toString();
  const response = await fetch(query ? `${path}?${query}` : path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

function cell(row, text, className) {
  const element = document.createElement("td");
  element.textContent = text;
  if (className) element.className = className;
  row.appendChild(element);
  return element;
}

// --- runs -----------------------------------------------------------------------------------------

function drawRuns(runs) {
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  for (const run of runs) {
    const row = document.createElement("tr");
    if (run.id === state.runId) row.className = "selected";
    const progress = run.planned ? `${run.jobs} / ${run.planned}` : String(run.jobs);
    const best = run.incumbent ? formatValue(run.incumbent.loss) : "";
    const incumbent = run.incumbent ? `${run.incumbent.config_id} on budget ${run.incumbent.budget}` : "";
    cell(row, run.id, "text");
    cell(row, run.optimizer, "text");
    cell(row, run.state, "text");
    cell(row, progress);
    cell(row, String(run.failures), run.failures ? "bad" : "");
    cell(row, `${run.elapsed.toFixed(1)} s`);
    cell(row, best);
    cell(row, incumbent, "text").title = run.incumbent ? configText(run.incumbent.config) : "";
    cell(row, run.path, "text");
    row.addEventListener("click", () => selectRun(run.id));
    body.appendChild(row);
  }
}

function selectRun(runId) {
  if (runId === state.runId) return;
  Object.assign(state, { runId, cursor: 0, origin: null, rows: [], parameters: [], selectedConfig: null,
    chartsDrawnAt: 0, importanceAt: 0, importanceVersion: null, versions: {}, tableDirty: true });
  document.getElementById("run-title").textContent = runId;
  document.getElementById("curve-title").textContent = "";
  document.getElementById("curve-config").textContent = "";
  poll();
}

// --- jobs table -----------------------------------------------------------------------------------

const FIXED_COLUMNS = [
  ["index", "#", "number"], ["config_id", "config", "text"], ["iteration", "iteration", "number"],
  ["budget", "budget", "number"], ["status", "status", "text"], ["loss", "loss", "number"],
  ["test_error", "test error", "number"], ["epochs", "epochs", "number"], ["device", "device", "text"],
  ["worker", "worker", "text"], ["started", "started [s]", "number"], ["finished", "finished [s]", "number"],
  ["duration", "duration [s]", "number"], ["reason", "reason", "text"],
];

function columns() {
  return FIXED_COLUMNS.concat(state.parameters.map((name) => [`hp:${name}`, name, "value"]));
}

function valueOf(row, key) {
  return key.startsWith("hp:") ? (row.config || {})[key.slice(3)] : row[key];
}

function addRows(rows) {
  const known = new Set(state.parameters);
  for (const row of rows) {
    for (const name of Object.keys(row.config || {})) {
      if (!known.has(name)) { known.add(name); state.parameters.push(name); }
    }
  }
  state.parameters.sort();
  state.rows.push(...rows);
  state.tableDirty = true;
}

function matches(value, filter) {
  const text = filter.trim();
  if (!text) return true;
  const range = text.match(/^(-?[\d.e+-]+)\s*\.\.\s*(-?[\d.e+-]+)$/);
  const comparison = text.match(/^(<=|>=|<|>|=)\s*(-?[\d.e+-]+)$/);
  if ((range || comparison) && typeof value === "number") {
    if (range) return value >= Number(range[1]) && value <= Number(range[2]);
    const limit = Number(comparison[2]);
    return { "<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit,
      "=": value === limit }[comparison[1]];
  }
  if (range || comparison) return false;
  return formatValue(value).toLowerCase().includes(text.toLowerCase());
}

function compare(first, second) {
  if (first === second) return 0;
  if (first === null || first === undefined) return 1;
  if (second === null || second === undefined) return -1;
  if (typeof first === "number" && typeof second === "number") return first - second;
  return String(first).localeCompare(String(second));
}

function visibleRows() {
  const active = Object.entries(state.filters).filter(([, filter]) => filter.trim());
  const kept = state.rows.filter((row) => active.every(([key, filter]) => matches(valueOf(row, key), filter)));
  const { key, descending } = state.sort;
  kept.sort((first, second) => {
    const order = compare(valueOf(first, key), valueOf(second, key));
    return descending ? -order : order;
  });
  return kept;
}

function drawTableHead() {
  const head = document.querySelector("#jobs thead");
  const signature = columns().map(([key]) => key).join("|") + `|${state.sort.key}|${state.sort.descending}`;
  if (head.dataset.signature === signature) return;
  head.dataset.signature = signature;
  head.replaceChildren();
  const titles = document.createElement("tr");
  const filters = document.createElement("tr");
  filters.className = "filters";
  for (const [key, label] of columns()) {
    const title = document.createElement("th");
    const arrow = state.sort.key === key ? (state.sort.descending ? " ▼" : " ▲") : "";
    title.textContent = label + arrow;
    title.dataset.key = key;
    title.addEventListener("click", () => {
      state.sort = { key, descending: state.sort.key === key && !state.sort.descending };
      state.tableDirty = true;
      drawTable();
    });
    titles.appendChild(title);
    const filterCell = document.createElement("th");
    const input = document.createElement("input");
    input.dataset.key = key;
    input.value = state.filters[key] || "";
    input.addEventListener("input", () => { state.filters[key] = input.value; state.tableDirty = true; drawTable(); });
    filterCell.appendChild(input);
    filters.appendChild(filterCell);
  }
  head.append(titles, filters);
}

function drawTable() {
  if (!state.tableDirty) return;
  state.tableDirty = false;
  drawTableHead();
  const rows = visibleRows();
  const body = document.querySelector("#jobs tbody");
  const fragment = document.createDocumentFragment();
  for (const row of rows.slice(0, ROW_LIMIT)) {
    const element = document.createElement("tr");
    element.dataset.config = row.config_id;
    if (row.config_id === state.selectedConfig) element.className = "selected";
    for (const [key, , kind] of columns()) {
      const value = valueOf(row, key);
      const bad = key === "status" && value !== "ok";
      cell(element, formatValue(value), kind === "number" ? (bad ? "bad" : "") : (bad ? "text bad" : "text"));
    }
    element.addEventListener("click", () => selectConfig(row.config_id));
    fragment.appendChild(element);
  }
  body.replaceChildren(fragment);
  document.getElementById("job-count").textContent = `(${state.rows.length} jobs)`;
  document.getElementById("jobs-shown").textContent = rows.length > ROW_LIMIT
    ? `showing the first ${ROW_LIMIT} of ${rows.length} matching jobs`
    : `${rows.length} of ${state.rows.length} jobs match`;
}

// --- charts ---------------------------------------------------------------------------------------

function layout(title, xTitle, yTitle, extra) {
  return Object.assign({ title: { text: title, font: { size: 14 } }, margin: { l: 60, r: 20, t: 40, b: 45 },
    xaxis: { title: { text: xTitle } }, yaxis: { title: { text: yTitle } }, hovermode: "closest" }, extra || {});
}

// Plotly's default colours, one per budget (ascending) in every chart that colours by budget.
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];

function budgetColor(budgets, budget) {
  return COLORS[budgets.indexOf(budget) % COLORS.length];
}

function drawIncumbent(incumbent) {
  const hover = incumbent.config_ids.map((id, index) =>
    `config ${escapeHtml(id)}, budget ${incumbent.budgets[index]}<br>loss ${formatValue(incumbent.losses[index])}` +
    `<br>${hoverConfig(incumbent.configs[index])}`);
  for (const [element, xs, end, xTitle] of [
    ["incumbent-time", incumbent.times, incumbent.end_time, "wall time [s]"],
    ["incumbent-epochs", incumbent.epochs, incumbent.total_epochs, "epochs trained (all jobs)"],
  ]) {
    const step = { x: xs.length ? xs.concat([end]) : [], y: xs.length ? incumbent.losses.concat([incumbent.losses.at(-1)]) : [],
      mode: "lines", line: { shape: "hv", color: "#222" }, name: "incumbent loss", hoverinfo: "skip" };
    const points = { x: xs, y: incumbent.losses, mode: "markers", name: "incumbents", text: hover,
      hoverinfo: "text", marker: { size: 9, color: "#222" } };
    const withJobs = element === "incumbent-time";
    const traces = withJobs ? [jobsTrace(), step, points] : [step, points];
    // Jobs span decades of loss: label only 1, 2 and 5 per decade there.
    const yaxis = Object.assign({ title: { text: "loss" }, type: "log" }, withJobs ? { dtick: "D2" } : {});
    Plotly.react(element, traces, layout(`incumbent (${incumbent.rule})`, xTitle, "loss",
      { yaxis, xaxis: { title: { text: xTitle }, rangemode: "tozero" }, showlegend: false }), PLOT_CONFIG);
  }
}

const JOB_POINTS = 5000;

function jobsTrace() {
  // Every finished job behind the incumbent line (the latest JOB_POINTS of a large run), coloured by budget.
  const rows = state.rows.filter((row) => row.loss !== null).slice(-JOB_POINTS);
  const budgets = [...new Set(state.rows.map((row) => row.budget))].sort((first, second) => first - second);
  return { x: rows.map((row) => row.finished), y: rows.map((row) => row.loss), mode: "markers", name: "jobs",
    text: rows.map((row) => `config ${escapeHtml(row.config_id)}, budget ${row.budget}, loss ${formatValue(row.loss)}`),
    hoverinfo: "text", marker: { size: 5, opacity: 0.5, color: rows.map((row) => budgetColor(budgets, row.budget)) } };
}

function drawGantt(gantt) {
  // One line trace per budget whose segments (separated by gaps) are the jobs: one SVG path per budget
  // instead of one per job, so ten thousand jobs still draw in a moment. Hover shows each job's ends.
  const budgets = [...new Set(gantt.budget)].sort((first, second) => first - second);
  const traces = budgets.map((budget) => {
    const x = [], y = [], text = [];
    gantt.budget.forEach((value, index) => {
      if (value !== budget) return;
      const label = `config ${escapeHtml(gantt.config_id[index])}, budget ${budget}, ${escapeHtml(gantt.status[index])}`;
      // A sliver of space after each job shows where one ends and the next begins.
      const gap = Math.min(gantt.duration[index] * 0.1, gantt.span * 0.002);
      x.push(gantt.started[index], gantt.started[index] + gantt.duration[index] - gap, null);
      y.push(gantt.worker[index], gantt.worker[index], null);
      text.push(label, label, null);
    });
    return { x, y, text, mode: "lines", name: `budget ${budget}`, hoverinfo: "text", connectgaps: false,
      line: { width: 14, color: budgetColor(budgets, budget) } };
  });
  const note = gantt.inferred ? " (results name no worker: slots)" : "";
  Plotly.react("gantt", traces, layout(`jobs per worker${note}`, "time since the first submission [s]", "",
    { yaxis: { type: "category", automargin: true, range: [-0.7, gantt.workers.length - 0.3] } }), PLOT_CONFIG);
}

function drawBudgets(budgets) {
  const labels = budgets.budgets.map((budget) => `budget ${budget}`);
  const trace = { type: "heatmap", z: budgets.matrix, x: labels, y: labels, zmin: -1, zmax: 1,
    colorscale: "RdBu", texttemplate: "%{z:.2f}", hovertemplate: "%{x} vs %{y}: %{z:.2f}<extra></extra>" };
  Plotly.react("budgets", [trace], layout("budget rank correlation (Spearman)", "", ""), PLOT_CONFIG);
}

function drawParallel(parallel) {
  if (!parallel.losses.length) {
    Plotly.react("parallel", [], layout("parallel coordinates: no finite loss yet", "", ""), PLOT_CONFIG);
    return;
  }
  const dimensions = parallel.dimensions.map((dimension) => {
    const present = dimension.values.filter((value) => value !== null);
    const low = present.length ? Math.min(...present) : 0;
    const entry = { label: dimension.label, values: dimension.values.map((value) => (value === null ? low - 1 : value)) };
    if (dimension.ticktext) Object.assign(entry, { ticktext: dimension.ticktext, tickvals: dimension.tickvals });
    return entry;
  });
  dimensions.push({ label: "loss", values: parallel.losses });
  const trace = { type: "parcoords", dimensions,
    line: { color: parallel.losses, colorscale: "Viridis", reversescale: true, showscale: true } };
  Plotly.react("parallel", [trace], layout(`parallel coordinates (budget ${parallel.budget}, best ${parallel.losses.length})`, "", "",
    { margin: { l: 60, r: 60, t: 90, b: 30 } }), PLOT_CONFIG);
}

function drawImportance(importance) {
  if (importance.error) {
    Plotly.react("importance", [], layout(`importance: ${importance.error}`.slice(0, 90), "", ""), PLOT_CONFIG);
    return;
  }
  const trace = { type: "bar", orientation: "h", x: importance.importances.slice().reverse(),
    y: importance.names.slice().reverse(), error_x: { type: "data", array: importance.spreads.slice().reverse() } };
  Plotly.react("importance", [trace], layout(`importance (${importance.jobs} jobs, held-out R² ${importance.r2.toFixed(2)})`,
    "relative permutation importance", "", { yaxis: { automargin: true } }), PLOT_CONFIG);
}

function drawCompare(data) {
  const traces = [];
  for (const band of data.bands) {
    traces.push({ x: band.times, y: band.upper, mode: "lines", line: { width: 0 }, legendgroup: band.optimizer,
      showlegend: false, hoverinfo: "skip" });
    traces.push({ x: band.times, y: band.lower, mode: "lines", line: { width: 0 }, fill: "tonexty",
      legendgroup: band.optimizer, name: `${band.optimizer} 25-75 %`, hoverinfo: "skip" });
    traces.push({ x: band.times, y: band.median, mode: "lines", legendgroup: band.optimizer,
      name: `${band.optimizer} median (${band.runs} runs)` });
  }
  for (const [runId, run] of Object.entries(data.runs)) {
    if (!run.times.length) continue;
    traces.push({ x: run.times.concat([run.end_time]), y: run.losses.concat([run.losses.at(-1)]), mode: "lines",
      line: { shape: "hv", width: 1, dash: "dot" }, opacity: 0.6, name: escapeHtml(runId), legendgroup: run.optimizer });
  }
  Plotly.react("compare", traces, layout(`incumbent loss of every run (${data.rule})`, "wall time [s]", "loss",
    { yaxis: { title: { text: "loss" }, type: "log" } }), PLOT_CONFIG);
}

async function selectConfig(configId) {
  state.selectedConfig = configId;
  state.tableDirty = true;
  drawTable();
  const data = await getJson("/api/curves", { run: state.runId, config: configId });
  await loadPlotly();
  const traces = data.jobs.filter((job) => job.errors.length).map((job) => ({
    x: job.errors.map((_, index) => index + 1), y: job.errors, mode: "lines+markers", name: `budget ${job.budget}` }));
  const finished = data.jobs.filter((job) => job.loss !== null);
  traces.push({ x: finished.map((job) => job.budget), y: finished.map((job) => job.loss), mode: "markers",
    name: "loss per budget", marker: { size: 11, symbol: "diamond" } });
  Plotly.react("curves", traces, layout(`configuration ${escapeHtml(data.config_id)}`, "epoch (budget)",
    "validation error / loss"), PLOT_CONFIG);
  document.getElementById("curve-title").textContent = data.config_id;
  document.getElementById("curve-config").textContent = configText(data.config);
}

// --- polling --------------------------------------------------------------------------------------

async function pollRun(run) {
  if (state.versions[run.id] !== run.version) await pollJobsAndCharts(run);
  const now = Date.now();
  const chartsShown = state.chartsDrawnAt > 0;  // the surrogate waits until the charts are up
  if (chartsShown && state.importanceVersion !== run.version && now - state.importanceAt >= IMPORTANCE_MILLISECONDS) {
    state.importanceAt = now;
    state.importanceVersion = run.version;
    inBackground("importance", "/api/importance", { run: run.id }, (answer) => {
      if (state.runId === run.id) drawImportance(answer);
    });
  }
}

// Answers that take the server a while (importance fits a random forest) are drawn when they arrive,
// without holding up the next poll; one request of each kind at a time.
const pending = new Set();

function inBackground(kind, path, parameters, draw) {
  if (pending.has(kind)) return;
  pending.add(kind);
  getJson(path, parameters).then(draw)
    .catch((error) => setStatus(`${kind}: ${error.message}`))
    .finally(() => pending.delete(kind));
}

async function pollJobsAndCharts(run) {
  const jobs = await getJson("/api/jobs", { run: run.id, cursor: state.cursor,
    origin: state.origin === null ? "" : state.origin });
  if (jobs.reset) { state.rows = []; state.parameters = []; }
  addRows(jobs.rows);
  state.cursor = jobs.cursor;
  state.origin = jobs.origin;
  drawTable();
  if (!window.Plotly || Date.now() - state.chartsDrawnAt < state.chartMilliseconds) return;
  const charts = await getJson("/api/charts", { run: run.id, rule: state.rule });
  const drawing = Date.now();
  for (const draw of [() => drawIncumbent(charts.incumbent), () => drawGantt(charts.gantt),
    () => drawBudgets(charts.budgets), () => drawParallel(charts.parallel)]) {
    if (state.runId !== run.id) return;
    draw();
    await nextTask();  // the page paints and answers clicks between charts (a large run's take seconds)
  }
  state.chartsDrawnAt = Date.now();
  state.versions[run.id] = Math.min(jobs.version, charts.version);
  // Large runs take a while to draw: redraw their charts less often (drawing about a tenth of the
  // time, at least every CHART_MAX_MILLISECONDS), so the table and the runs list stay live.
  state.chartMilliseconds = Math.min(CHART_MAX_MILLISECONDS,
    Math.max(CHART_MILLISECONDS, 10 * (state.chartsDrawnAt - drawing)));
}

function pollCompare(runs) {
  const key = runs.map((run) => `${run.id}:${run.version}`).join(",") + state.rule;
  if (!window.Plotly || key === state.compareKey || pending.has("compare")) return;
  state.compareKey = key;
  inBackground("compare", "/api/compare", { rule: state.rule }, drawCompare);
}

async function poll() {
  if (state.polling) { state.pollAgain = true; return; }
  state.polling = true;
  try {
    const { runs } = await getJson("/api/runs", { rule: state.rule });
    if (state.runId === null && runs.length) selectRun(runs[0].id);
    drawRuns(runs);
    const selected = runs.find((run) => run.id === state.runId);
    if (selected) await pollRun(selected);
    pollCompare(runs);
    setStatus(`${runs.length} run(s); updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    setStatus(`waiting for the server (${error.message})`);
  } finally {
    state.polling = false;
  }
  if (state.pollAgain) { state.pollAgain = false; await poll(); }
}

async function loop() {
  await poll();
  loadPlotly().catch((error) => setStatus(error.message));
  setTimeout(loop, state.pollMilliseconds);
}

async function start() {
  const config = await getJson("/api/config");
  state.pollMilliseconds = config.poll_milliseconds;
  state.rule = config.rule;
  const select = document.getElementById("rule");
  for (const rule of config.rules) {
    const option = document.createElement("option");
    option.value = rule;
    option.textContent = rule;
    select.appendChild(option);
  }
  select.value = state.rule;
  select.addEventListener("change", () => {
    state.rule = select.value;
    Object.assign(state, { versions: {}, chartsDrawnAt: 0, compareKey: "", selectedConfig: null });
    poll();
  });
  loop();
}

window.addEventListener("DOMContentLoaded", start);
