// aifactory dashboard: fleet, quotas and jobs from the REST API, refreshed every 5 s.
// Every value goes into the page as text (textContent), never as HTML: job names and
// commands are user input.
"use strict";

const REFRESH_MS = 5000;
let token = sessionStorage.getItem("aifactory-token") || "";

function takeTokenFromHash() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("aifactory-token", token);
    history.replaceState(null, "", location.pathname);  // keep it out of the address bar
  }
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

async function api(method, path) {
  const res = await fetch(path, { method, headers: { Authorization: "Bearer " + token } });
  if (!res.ok) {
    let detail = res.status + " " + res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(path + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
  }
  return res.status === 204 ? null : res.json();
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

async function refresh() {
  if (!token) {
    setStatus("paste a token (aifactory admin create-token) to see your jobs");
    return;
  }
  try {
    const [fleet, quotas, jobs] = await Promise.all([
      api("GET", "/v1/fleet"), api("GET", "/v1/quotas"), api("GET", "/v1/jobs?limit=200"),
    ]);
    document.getElementById("fleet-name").textContent =
      fleet.name + ": " + fleet.gpus.toLocaleString("en") + " GPUs";
    fill("fleet", fleet.classes, (row, c) => {
      cell(row, c.gpu_class); cell(row, c.model);
      cell(row, c.gpus, "num"); cell(row, c.busy, "num");
      cell(row, c.gpus ? (100 * c.busy / c.gpus).toFixed(1) : "", "num");
    });
    fill("quotas", quotas, (row, q) => {
      cell(row, q.tenant); cell(row, q.gpu_class); cell(row, q.nominal, "num");
      cell(row, q.used, "num"); cell(row, q.borrowed, "num"); cell(row, q.lent, "num");
    });
    fill("jobs", jobs.items, (row, j) => {
      row.dataset.jobId = String(j.id);
      cell(row, j.id, "num"); cell(row, j.tenant); cell(row, j.name); cell(row, j.gpus, "num");
      cell(row, j.state + (j.cancel_requested ? " (cancelling)" : ""), "state-" + j.state);
      cell(row, when(j.submitted_at)); cell(row, when(j.started_at));
      cell(row, j.placement.map((p) => p.node + ":" + p.gpus.join(",")).join(" "));
      const actions = cell(row, "");
      if (j.state === "pending" || j.state === "running") {
        const b = document.createElement("button");
        b.textContent = "cancel";
        b.addEventListener("click", () => cancel(j.id));
        actions.appendChild(b);
      }
    });
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
takeTokenFromHash();
refresh();
setInterval(refresh, REFRESH_MS);
