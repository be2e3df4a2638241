// aifactory dashboard: overview (fleet now and its 5-minute history as charts), queues and
// quotas (quota rows, fair share, every pending job with its reason and expected start),
// jobs (filter, sort, compressed node lists), one job (history, placement, live log tail,
// forecast, cancel), a submit form, and from pages.js the projects, one project and the
// Twin page. One page at a time, chosen by the address's hash (#overview, #queues, #jobs,
// #job/ID, #submit, #projects, #project/ID, #twin); only the page shown is fetched, every
// 5 s (a job's page every 2 s, for its log).
// Every value goes into the page as text (textContent), never as HTML: job names and
// commands are user input. The submit form sends what was typed and shows the API's own
// validation errors: one set of rules, the API's.
"use strict";

const REFRESH_MS = 5000;
const JOB_REFRESH_MS = 2000;
const PAGES = ["overview", "queues", "jobs", "job", "submit", "projects", "project", "twin"];
let token = sessionStorage.getItem("aifactory-token") || "";
let page = "overview";
let jobId = null;
let projectId = null;
let jobsCache = [];
let sortKey = "id";
let sortDesc = true;
let timer = null;

function takeTokenFromHash() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("aifactory-token", token);
    const p = /(?:^#|&)page=([^&]+)/.exec(location.hash);
    // keep the token out of the address bar (and the history)
    history.replaceState(null, "", location.pathname + (p ? "#" + decodeURIComponent(p[1]) : ""));
  }
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    let detail = res.status + " " + res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(path + ": " + describe(detail));
  }
  return res.status === 204 ? null : res.json();
}

function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => (d.field || (d.loc || []).join(".")) + ": " + (d.reason || d.msg))
      .join("; ");
  }
  return JSON.stringify(detail);
}

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = value === null || value === undefined ? "" : String(value);
  if (cls) td.className = cls;
  return td;
}

function when(t) {
  return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
}

function fill(id, rows, render) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const r of rows) render(body.insertRow(), r);
}

function jobLink(td, id) {
  td.textContent = "";
  const a = document.createElement("a");
  a.href = "#job/" + id;
  a.textContent = String(id);
  td.appendChild(a);
}

function cancelButton(td, id) {
  const b = document.createElement("button");
  b.textContent = "cancel";
  b.className = "cancel";
  b.addEventListener("click", () => cancel(id));
  td.appendChild(b);
}

// -- pages --------------------------------------------------------------------------

async function showFleet() {
  const fleet = await api("GET", "/v1/fleet");
  document.getElementById("fleet-name").textContent =
    fleet.name + ": " + fleet.gpus.toLocaleString("en") + " GPUs";
  return fleet;
}

async function refreshOverview() {
  const [fleet, samples] = await Promise.all([showFleet(), api("GET", "/v1/metrics/samples")]);
  fill("fleet", fleet.classes, (row, c) => {
    cell(row, c.gpu_class); cell(row, c.model);
    cell(row, c.gpus, "num"); cell(row, c.busy, "num");
    cell(row, c.gpus ? (100 * c.busy / c.gpus).toFixed(1) : "", "num");
  });
  const busy = new Map(), free = new Map(), pending = new Map(), power = new Map();
  const caps = new Map();
  const push = (map, key, t, v) => {
    if (!map.has(key)) map.set(key, []);
    map.get(key).push([t, v]);
  };
  for (const s of samples) {
    for (const g of s.gpus) {
      const key = g.site + " " + g.gpu_class;
      push(busy, key, s.at, g.busy);
      push(free, key, s.at, g.free);
      if (g.down) push(free, key + " down", s.at, g.down);
    }
    for (const [tenant, gpus] of Object.entries(s.pending)) push(pending, tenant, s.at, gpus);
    for (const p of s.power) { push(power, p.site, s.at, p.kw); caps.set(p.site, p.cap_kw); }
  }
  // a tenant missing from a sample had nothing pending then: draw it as 0
  for (const pts of pending.values()) {
    const have = new Set(pts.map(([t]) => t));
    for (const s of samples) if (!have.has(s.at)) pts.push([s.at, 0]);
    pts.sort((a, b) => a[0] - b[0]);
  }
  const series = (map) => [...map.entries()].sort().map(([name, points]) => ({ name, points }));
  lineChart(document.getElementById("chart-busy"), "Busy GPUs per site and class", "GPUs",
    series(busy), []);
  lineChart(document.getElementById("chart-free"), "Free and down GPUs per site and class",
    "GPUs", series(free), []);
  lineChart(document.getElementById("chart-pending"), "Pending GPUs per tenant", "GPUs",
    series(pending), []);
  lineChart(document.getElementById("chart-power"), "Power per site (estimate, with PUE)",
    "kW", series(power), [...caps.entries()].sort().map(([s, v]) => ({ name: s + " cap", value: v })));
}

async function refreshQueues() {
  const [quotas, share, queue] = await Promise.all([
    api("GET", "/v1/quotas"), api("GET", "/v1/share"), api("GET", "/v1/queue"), showFleet(),
  ]);
  fill("quotas", quotas, (row, q) => {
    // A class several owners own has a row per owner's hardware: class@owner.
    cell(row, q.tenant);
    cell(row, q.hardware_owner ? q.gpu_class + "@" + q.hardware_owner : q.gpu_class);
    cell(row, q.cohort || ""); cell(row, q.nominal, "num"); cell(row, q.used, "num");
    cell(row, q.borrowed, "num"); cell(row, q.borrowed_total, "num"); cell(row, q.lent, "num");
  });
  fill("share", share, (row, s) => {
    cell(row, s.tenant); cell(row, s.shares, "num"); cell(row, s.norm_shares.toFixed(3), "num");
    cell(row, s.usage_gpu_h.toFixed(1), "num"); cell(row, s.effective_usage.toFixed(3), "num");
    cell(row, s.fairshare.toFixed(3), "num"); cell(row, s.running_gpus, "num");
  });
  const shown = queue.items.length < queue.total
    ? "; the first " + queue.items.length.toLocaleString("en") + " shown" : "";
  document.getElementById("pending-count").textContent = "(" + queue.total.toLocaleString("en") +
    " jobs" + shown + ", forecast at " + when(queue.forecast_at) + ")";
  // Rows are built off the document and put in at once (one page: 1,000 by default).
  const body = document.createElement("tbody");
  for (const j of queue.items) {
    const row = body.insertRow();
    jobLink(cell(row, j.id, "num"), j.id);
    cell(row, j.tenant); cell(row, j.name); cell(row, j.gpus, "num"); cell(row, j.gpu_class || "any");
    cell(row, j.priority_class); cell(row, when(j.submitted_at)); cell(row, j.reason || "");
    cell(row, j.estimated_start ? when(j.estimated_start) : "unknown");
  }
  document.querySelector("#pending tbody").replaceWith(body);
}

async function refreshJobs() {
  const params = new URLSearchParams({ limit: "1000" });
  const tenant = document.getElementById("filter-tenant").value;
  const state = document.getElementById("filter-state").value;
  const name = document.getElementById("filter-name").value.trim();
  if (tenant) params.set("tenant", tenant);
  if (state) params.set("state", state);
  if (name) params.set("name", name);
  const [jobs, quotas] = await Promise.all([
    api("GET", "/v1/jobs?" + params.toString()), api("GET", "/v1/quotas"), showFleet(),
  ]);
  const select = document.getElementById("filter-tenant");
  const known = new Set([...select.options].map((o) => o.value));
  for (const t of [...new Set(quotas.map((q) => q.tenant))].sort()) {
    if (!known.has(t)) select.add(new Option(t, t));
  }
  jobsCache = jobs.items;
  renderJobs();
}

function renderJobs() {
  const rows = [...jobsCache];
  rows.sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    const c = x === y ? 0 : x === null ? -1 : y === null ? 1 : x < y ? -1 : 1;
    return sortDesc ? -c : c;
  });
  fill("jobs", rows, (row, j) => {
    row.dataset.jobId = String(j.id);
    jobLink(cell(row, j.id, "num"), j.id);
    cell(row, j.tenant); cell(row, j.name); cell(row, j.gpus, "num");
    cell(row, j.state + (j.cancel_requested ? " (cancelling)" : ""), "state-" + j.state);
    cell(row, when(j.submitted_at)); cell(row, when(j.started_at));
    cell(row, j.nodelist);
    const actions = cell(row, "");
    if (j.state === "pending" || j.state === "running") cancelButton(actions, j.id);
  });
  for (const th of document.querySelectorAll("#jobs th[data-key]")) {
    th.className = th.dataset.key === sortKey ? (sortDesc ? "sorted-desc" : "sorted-asc") : "";
  }
}

async function refreshJob() {
  const [job, forecast] = await Promise.all([
    api("GET", "/v1/jobs/" + jobId), api("GET", "/v1/jobs/" + jobId + "/forecast"),
  ]);
  document.getElementById("job-id").textContent = String(job.id);
  document.getElementById("job-name").textContent = job.name;
  document.getElementById("job-cancel").hidden = !(job.state === "pending" || job.state === "running");
  const fields = [
    ["state", job.state + (job.cancel_requested ? " (cancelling)" : "")],
    ["reason", job.reason || ""],
    ["tenant", job.tenant],
    ["GPUs", job.gpus + " x " + (job.gpu_class || (job.gpu_classes || []).join("|") || "any")],
    ["priority", job.priority_class + (job.preemptible ? ", preemptible" : "") +
      (job.preempt_grace_s !== null && job.preempt_grace_s !== undefined
        ? ", " + job.preempt_grace_s + " s to save" : "") + (job.service ? ", a service" : "")],
    ["time limit", job.time_limit_s + " s"],
    ["command", job.command],
    ["submitted", when(job.submitted_at)],
    ["started", when(job.started_at)],
    ["ended", when(job.ended_at) + (job.exit_code !== null ? " (exit " + job.exit_code + ")" : "")],
    ["expected start", forecast.estimated_start ? when(forecast.estimated_start) : "unknown"],
    ["expected end", forecast.estimated_end ? when(forecast.estimated_end) : "unknown"],
    ["forecast", forecast.note || "at " + when(forecast.now)],
    ["nodes", job.nodelist],
    ["placement", job.placement.map((p) => p.node + ":" + p.gpus.join(",")).join(" ")],
    ["attempts", job.attempts],
  ];
  fill("job-fields", fields, (row, [k, v]) => {
    row.dataset.field = k;
    const th = document.createElement("th");
    th.textContent = k;
    row.appendChild(th);
    cell(row, v);
  });
  fill("job-history", job.history, (row, e) => {
    cell(row, when(e.at)); cell(row, e.state); cell(row, e.detail);
  });
  document.getElementById("job-log").textContent = job.log_tail === null ? "(no log)" : job.log_tail;
}

async function prepareSubmit() {
  const fleet = await showFleet();
  const select = document.getElementById("submit-class");
  const known = new Set([...select.options].map((o) => o.value));
  for (const c of fleet.classes) if (!known.has(c.gpu_class)) select.add(new Option(c.gpu_class, c.gpu_class));
}

async function submitJob(ev) {
  ev.preventDefault();
  const out = document.getElementById("submit-result");
  const body = {
    name: document.getElementById("submit-name").value,
    gpus: Number(document.getElementById("submit-gpus").value),
    command: document.getElementById("submit-command").value,
    time_limit_s: Number(document.getElementById("submit-time").value),
    priority_class: document.getElementById("submit-priority").value,
    preemptible: document.getElementById("submit-preemptible").checked,
  };
  const cls = document.getElementById("submit-class").value;
  if (cls) body.gpu_class = cls;
  const grace = document.getElementById("submit-grace").value;
  if (grace !== "") body.preempt_grace_s = Number(grace);
  if (document.getElementById("submit-service").checked) body.service = true;
  try {
    const job = await api("POST", "/v1/jobs", body);
    out.className = "";
    out.textContent = "submitted job " + job.id;
    location.hash = "#job/" + job.id;
  } catch (e) {
    out.className = "error";
    out.textContent = e.message;
  }
}

// -- navigation and refresh ------------------------------------------------------------

function route() {
  const h = location.hash.replace(/^#/, "");
  const m = /^job\/(\d+)$/.exec(h);
  const pm = /^project\/(\d+)$/.exec(h);
  if (m) { page = "job"; jobId = Number(m[1]); }
  else if (pm) { page = "project"; projectId = Number(pm[1]); }
  else { page = PAGES.includes(h) && h !== "job" && h !== "project" ? h : "overview"; }
  for (const p of PAGES) document.getElementById("page-" + p).hidden = p !== page;
  const tab = page === "project" ? "projects" : page;
  for (const a of document.querySelectorAll("nav a")) {
    a.className = a.dataset.page === tab ? "current" : "";
  }
  refresh();
}

async function refresh() {
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(refresh, page === "job" ? JOB_REFRESH_MS : REFRESH_MS);
  if (!token) {
    setStatus("paste a token (aifactory admin create-token) to see your jobs");
    return;
  }
  try {
    const t0 = performance.now();
    if (page === "overview") await refreshOverview();
    else if (page === "queues") await refreshQueues();
    else if (page === "jobs") await refreshJobs();
    else if (page === "job") await refreshJob();
    else if (page === "projects") await refreshProjects();
    else if (page === "project") await refreshProject();
    else if (page === "twin") await refreshTwin();
    else await prepareSubmit();
    document.body.dataset.loadedMs = String(Math.round(performance.now() - t0));
    document.body.dataset.page = page;
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setStatus(e.message);
  }
}

async function cancel(id) {
  try {
    await api("DELETE", "/v1/jobs/" + id);
  } catch (e) {
    setStatus(e.message);
  }
  refresh();
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("aifactory-token", token);
  refresh();
});
document.getElementById("job-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  refresh();
});
document.getElementById("submit-form").addEventListener("submit", submitJob);
document.getElementById("job-cancel").addEventListener("click", () => cancel(jobId));
for (const th of document.querySelectorAll("#jobs th[data-key]")) {
  th.addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDesc = !sortDesc;
    else { sortKey = th.dataset.key; sortDesc = false; }
    renderJobs();
  });
}
window.addEventListener("hashchange", route);
takeTokenFromHash();
route();
