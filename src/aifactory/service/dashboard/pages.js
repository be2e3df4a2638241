// aifactory dashboard: the projects pages (issue #19: every project the token may see with
// its grants; one project's balance, burn rate, forecast of exhaustion, allocations and
// recent charges) and the Twin page (issue #21 §1: stored simulate/run/sweep reports, and a
// what-if from the live state: policy, backfill, power caps and fleet changes). Loaded before app.js, which routes to these functions and
// lends them its helpers (api, cell, fill, when, jobLink). Every value goes in as text.
// A report opens in a frame through a short-lived ticket: a frame cannot send the token,
// and the report is served sandboxed, so it can neither run script nor read this page.
"use strict";

// GPU-hours: two decimals, two significant digits below 1 (a short job's charge is not 0)
function hours(v) {
  if (v === null || v === undefined) return "";
  if (v !== 0 && Math.abs(v) < 1) return v.toPrecision(2);
  return v.toLocaleString("en", { maximumFractionDigits: 2 });
}

function day(t) {
  return t ? new Date(t * 1000).toISOString().slice(0, 10) : "";
}

// seconds as a signed "+1 h 30 min" / "-2 d 3 h" (0: "0")
function duration(s) {
  if (s === null || s === undefined) return "";
  if (Math.abs(s) < 30) return "0";
  const sign = s < 0 ? "-" : "+";
  let left = Math.round(Math.abs(s) / 60);
  const d = Math.floor(left / 1440); left -= d * 1440;
  const h = Math.floor(left / 60); const m = left - h * 60;
  const parts = [];
  if (d) parts.push(d + " d");
  if (h) parts.push(h + " h");
  if (m && !d) parts.push(m + " min");
  return sign + parts.join(" ");
}

function wait(s) {
  return s === null || s === undefined ? "" : duration(s).replace(/^\+/, "");
}

function projectLink(td, id, text) {
  td.textContent = "";
  const a = document.createElement("a");
  a.href = "#project/" + id;
  a.textContent = text;
  td.appendChild(a);
}

// -- projects -----------------------------------------------------------------------------

async function refreshProjects() {
  const [projects, allocs] = await Promise.all([
    api("GET", "/v1/projects"), api("GET", "/v1/allocations"), showFleet(),
  ]);
  const grants = new Map();
  for (const a of allocs) {
    const g = grants.get(a.project) || { n: 0, active: 0, granted: 0, used: 0, balance: 0 };
    g.n += 1;
    if (a.state === "active") { g.active += 1; g.balance += Math.max(0, a.balance_gpu_hours); }
    if (!["requested", "endorsed", "rejected"].includes(a.state)) {
      g.granted += a.gpu_hours; g.used += a.used_gpu_hours;
    }
    grants.set(a.project, g);
  }
  document.getElementById("projects-count").textContent = "(" + projects.length + ")";
  fill("projects", projects, (row, p) => {
    const g = grants.get(p.id) || { n: 0, active: 0, granted: 0, used: 0, balance: 0 };
    row.dataset.projectId = String(p.id);
    projectLink(cell(row, ""), p.id, p.name);
    cell(row, p.tenant); cell(row, p.title); cell(row, p.pi);
    cell(row, day(p.start_s) + " to " + day(p.end_s));
    cell(row, g.active + " / " + g.n, "num");
    cell(row, hours(g.granted), "num"); cell(row, hours(g.used), "num");
    cell(row, hours(g.balance), "num");
  });
}

function runsOut(p) {
  if (p.outlook === "runs out") return day(p.exhausted_at) + " (" + when(p.exhausted_at) + " UTC)";
  if (p.outlook === "not before period end") return "not before period end (" + day(p.period_end_s) + ")";
  if (p.outlook === "no usage") return "not at this rate: nothing used in the last 7 days";
  return "no active allocation";
}

async function refreshProject() {
  const month = new Date().toISOString().slice(0, 7);
  const [p, recent, st] = await Promise.all([
    api("GET", "/v1/projects/" + projectId),
    api("GET", "/v1/projects/" + projectId + "/charges?limit=50"),
    api("GET", "/v1/projects/" + projectId + "/statement?month=" + month),
    showFleet(),
  ]);
  // GPU-hours a day this month, one line per class (0 on a day with no charge), against
  // the 7-day burn rate
  const days = [];
  for (let t = st.from_s; t <= Date.now() / 1000 && t < st.to_s; t += 86400) days.push(t);
  const perClass = new Map();
  for (const d of st.by_day) {
    if (!perClass.has(d.gpu_class)) perClass.set(d.gpu_class, new Map(days.map((t) => [t, 0])));
    perClass.get(d.gpu_class).set(Date.parse(d.day + "T00:00:00Z") / 1000, d.gpu_hours);
  }
  lineChart(document.getElementById("chart-project-use"), "GPU-hours charged a day, " + month,
    "GPU-h", [...perClass.entries()].sort().map(([name, byDay]) => ({
      name, points: [...byDay.entries()].sort((a, b) => a[0] - b[0]),
    })),
    [{ name: "burn rate (7-day mean)", value: p.burn_gpu_hours_per_day }], { daily: true });
  document.getElementById("project-name").textContent = p.name;
  const fields = [
    ["tenant", p.tenant],
    ["title", p.title],
    ["principal investigator", p.pi],
    ["period", day(p.start_s) + " to " + day(p.end_s)],
    ["balance", hours(p.balance_gpu_hours) + " GPU-h (active allocations)"],
    ["burn rate", hours(p.burn_gpu_hours_per_day) + " GPU-h/day (mean of the last 7 days)"],
    ["runs out", runsOut(p)],
    ["members", p.members.length + " token(s)"],
  ];
  fill("project-fields", fields, (row, [k, v]) => {
    row.dataset.field = k;
    const th = document.createElement("th");
    th.textContent = k;
    row.appendChild(th);
    cell(row, v);
  });
  fill("project-allocs", p.allocations, (row, a) => {
    cell(row, a.id, "num"); cell(row, a.unit); cell(row, a.state, "alloc-" + a.state);
    cell(row, day(a.start_s) + " to " + day(a.end_s));
    cell(row, hours(a.gpu_hours), "num"); cell(row, hours(a.used_gpu_hours), "num");
    cell(row, hours(a.balance_gpu_hours), "num");
    cell(row, a.overdraft ? "yes" : "no");
  });
  fill("project-charges", recent, (row, c) => {
    jobLink(cell(row, c.job_id, "num"), c.job_id);
    cell(row, c.name); cell(row, c.attempt, "num"); cell(row, c.gpu_class);
    cell(row, c.gpus, "num"); cell(row, when(c.start_s)); cell(row, when(c.end_s));
    cell(row, hours(c.gpu_hours), "num");
  });
}

// -- twin ---------------------------------------------------------------------------------

async function refreshTwin() {
  const [got, fleet] = await Promise.all([api("GET", "/v1/twin/reports"), showFleet()]);
  options("whatif-sites", fleet.sites);
  options("whatif-tenant-names", fleet.tenants);
  options("whatif-classes", fleet.classes.map((c) => c.gpu_class));
  options("whatif-models", fleet.classes.map((c) => c.model));
  document.getElementById("reports-folder").textContent = got.folder;
  fill("reports", got.items, (row, r) => {
    row.dataset.report = r.name;
    cell(row, r.name); cell(row, r.kind); cell(row, when(r.modified_at));
    cell(row, (r.bytes / 1024).toFixed(0) + " KiB", "num");
    const td = cell(row, "");
    for (const f of r.files) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "open " + f;
      b.className = "open-report";
      b.addEventListener("click", () => openReport(r.name, f));
      td.appendChild(b);
    }
  });
}

async function openReport(name, file) {
  try {
    const t = await api("POST", "/v1/twin/reports/" + encodeURIComponent(name) + "/" +
      encodeURIComponent(file) + "/ticket");
    const frame = document.getElementById("report-frame");
    frame.hidden = false;
    frame.src = t.url;
    document.getElementById("report-title").textContent = name + "/" + file;
  } catch (e) {
    setStatus(e.message);
  }
}

function options(id, values) {
  const list = document.getElementById(id);
  list.replaceChildren(...[...new Set(values)].map((v) => {
    const o = document.createElement("option");
    o.value = v;
    return o;
  }));
}

// Fleet changes of the what-if: the ones added to the list, then the one being edited.
const whatifEdits = [];

function editFields() {
  const kind = document.getElementById("whatif-edit").value;
  for (const f of document.querySelectorAll("#whatif-fleet fieldset")) {
    const on = f.dataset.edit === kind;
    f.hidden = !on;
    f.disabled = !on;
  }
  document.getElementById("whatif-add-edit").hidden = !kind;
}

// The edit the shown fields describe (the scenario files' keys), or null when none is chosen.
function currentEdit() {
  const kind = document.getElementById("whatif-edit").value;
  if (!kind) return null;
  const edit = { edit: kind };
  for (const input of document.querySelectorAll(`#whatif-fleet fieldset[data-edit='${kind}'] [name]`)) {
    const v = input.value.trim();
    if (v === "") {
      if ("nullable" in input.dataset) edit[input.name] = null;
      continue;
    }
    if (input.name.startsWith("between_")) continue;
    if (input.type === "number") edit[input.name] = Number(v);
    else if ("limit" in input.dataset) edit[input.name] = v === "unlimited" ? v : Number(v);
    else edit[input.name] = v;
  }
  if (kind === "link_bandwidth") {
    // one link by its two sites, or (both empty) every link
    const end = (n) => document.querySelector(`#whatif-fleet fieldset[data-edit='link_bandwidth'] [name='${n}']`).value.trim();
    const [a, b] = [end("between_a"), end("between_b")];
    if (a || b) edit.between = [[a, b]];
  }
  return edit;
}

function describeEdit(e) {
  return Object.entries(e).map(([k, v]) => (k === "edit" ? v : k + "=" + v)).join(" ");
}

function showEdits() {
  const list = document.getElementById("whatif-edits");
  list.replaceChildren(...whatifEdits.map((e, i) => {
    const li = document.createElement("li");
    li.textContent = describeEdit(e) + " ";
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "remove";
    b.addEventListener("click", () => { whatifEdits.splice(i, 1); showEdits(); });
    li.appendChild(b);
    return li;
  }));
}

function addEdit() {
  const kind = document.getElementById("whatif-edit").value;
  const inputs = document.querySelectorAll(`#whatif-fleet fieldset[data-edit='${kind}'] [name]`);
  for (const input of inputs) if (!input.reportValidity()) return;
  whatifEdits.push(currentEdit());
  for (const input of inputs) input.value = "";
  document.getElementById("whatif-edit").value = "";
  editFields();
  showEdits();
}

function mean(xs) {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

// What a sampled what-if drew: its seed, failures expected and drawn, jobs interrupted,
// arrivals (the service's forecast / the what-if's, means over the samples).
function describeSampled(s) {
  const pair = (f) => f(s.base) + " / " + f(s.variant);
  const parts = ["sampled forecast, seed " + s.seed + ", " + s.samples + " sample" +
    (s.samples > 1 ? "s" : "") + " (service / what-if)"];
  if (s.failure_model) {
    parts.push(s.failure_model + " failures expected " +
      pair((x) => x.expected_failures.toFixed(1)) + ", drawn " +
      pair((x) => mean(x.failures).toFixed(1)) + ", live jobs interrupted " +
      pair((x) => mean(x.interrupted).toFixed(1)) +
      (s.interrupted.length ? " (" + s.interrupted.join(", ") + ")" : ""));
  }
  if (s.history_days !== null) {
    parts.push("arrivals drawn from the last " + s.history_days + " days " +
      pair((x) => mean(x.arrivals).toFixed(1)) + (s.arrivals.length ? ": " +
      s.arrivals.map((a) => a.tenant + " " + a.rate_per_day.toFixed(1) + "/day x" + a.growth)
        .join(", ") : ""));
  }
  return parts.join("; ");
}

function capacityChanges(base, variant) {
  const classes = [...new Set([...Object.keys(base), ...Object.keys(variant)])].sort();
  return classes.filter((c) => (base[c] || 0) !== (variant[c] || 0))
    .map((c) => c + " " + (base[c] || 0) + " \u2192 " + (variant[c] || 0) + " GPUs");
}

async function runWhatIf(ev) {
  ev.preventDefault();
  const out = document.getElementById("whatif-result");
  const body = { horizon_days: Number(document.getElementById("whatif-horizon").value) };
  const policy = document.getElementById("whatif-policy").value;
  const backfill = document.getElementById("whatif-backfill").value;
  const cap = document.getElementById("whatif-power-cap").value;
  if (policy) body.policy = policy;
  if (backfill) body.backfill = backfill;
  if (cap) body.power_cap = cap === "on";
  body.seed = Number(document.getElementById("whatif-seed").value);
  body.samples = Number(document.getElementById("whatif-samples").value);
  body.history_days = Number(document.getElementById("whatif-history").value);
  const current = currentEdit();
  const edits = current ? [...whatifEdits, current] : [...whatifEdits];
  if (edits.length) body.edits = edits;
  const button = document.querySelector("#whatif-form button[type=submit]");
  button.disabled = true;
  document.body.dataset.whatif = "running";
  out.className = "";
  out.textContent = "forking the live state and forecasting both ...";
  try {
    const r = await api("POST", "/v1/twin/whatif", body);
    out.textContent = "now " + when(r.now) + " UTC: " + r.base.policy + "/" + r.base.backfill +
      " (the service) against " + r.variant.policy + "/" + r.variant.backfill + ", " +
      (r.horizon_s / 86400) + " days ahead; " + r.jobs_total + " jobs, computed in " +
      r.seconds.toFixed(2) + " s" +
      (r.base.power_cap === r.variant.power_cap ? "" :
        "; power caps " + (r.variant.power_cap ? "on" : "off")) +
      (r.edits ? "; " + r.edits + " change" + (r.edits > 1 ? "s" : "") + ": " +
        (capacityChanges(r.base.gpus, r.variant.gpus).join(", ") || "same GPUs") : "") +
      (r.requeued.length ? "; requeued (nodes removed): " + r.requeued.join(", ") : "") +
      (r.sampled ? "; " + describeSampled(r.sampled) : "");
    document.body.dataset.whatif = "done";
    fill("whatif-tenants", r.tenants, (row, t) => {
      cell(row, t.tenant); cell(row, t.pending, "num");
      cell(row, t.started_base + " / " + t.started_variant, "num");
      cell(row, wait(t.mean_wait_base_s), "num"); cell(row, wait(t.mean_wait_variant_s), "num");
      cell(row, duration(t.mean_start_delta_s), "num delta");
      cell(row, duration(t.mean_end_delta_s), "num delta");
    });
    fill("whatif-jobs", r.jobs, (row, j) => {
      jobLink(cell(row, j.id, "num"), j.id);
      cell(row, j.tenant); cell(row, j.gpus, "num"); cell(row, j.state);
      cell(row, j.base_start === null ? "not within horizon" : when(j.base_start));
      cell(row, j.variant_start === null ? "not within horizon" : when(j.variant_start));
      cell(row, duration(j.start_delta_s), "num delta");
    });
  } catch (e) {
    out.className = "error";
    out.textContent = e.message;
    document.body.dataset.whatif = "failed";
  } finally {
    button.disabled = false;
  }
}

document.getElementById("whatif-form").addEventListener("submit", runWhatIf);
document.getElementById("whatif-edit").addEventListener("change", editFields);
document.getElementById("whatif-add-edit").addEventListener("click", addEdit);
