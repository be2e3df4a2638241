"""`aifactory twin whatif`: a what-if from the live state on a running control plane (issue
#21 §1, the dashboard's Twin page from a terminal; admins). Configured like `aifactory job`
(``AIFACTORY_URL``/``TOKEN``). Knobs are the API's: ``--policy``, ``--backfill``,
``--power-cap``, and edits, either as a scenario file's edit in JSON (``--edit``, repeated,
in order) or by the shortcuts ``--link-factor``, ``--failure-rate`` and ``--growth
TENANT=FACTOR``; the service checks every one (a 422 names ``edits[j].field``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.common import fail, out, print_json
from aifactory.cli.job_cmd import Json, client

app = typer.Typer(help="The digital twin against the live state (admins).", no_args_is_help=True)
JOBS_SHOWN = 20


def _when(ts: float | None) -> str:
    if ts is None:
        return "not within horizon"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _delta(s: float | None) -> str:
    if s is None:
        return ""
    sign = "-" if s < 0 else "+" if s > 0 else ""
    s = abs(s)
    return f"{sign}{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}" if s else "0"


def _edits(edit: list[str], link_factor: float | None, failure_rate: float | None,
           growth: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    """The edits in order: the JSON ones, then the shortcuts'."""
    edits: list[dict[str, Any]] = []
    for k, text in enumerate(edit):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"--edit #{k + 1}: not JSON ({exc.msg})")
        if not isinstance(value, dict):
            fail(f'--edit #{k + 1}: must be a JSON object such as \'{{"edit": "policy"}}\'')
        edits.append(value)
    if link_factor is not None:
        edits.append({"edit": "link_bandwidth", "factor": link_factor})
    if failure_rate is not None:
        edits.append({"edit": "failure_rate", "multiplier": failure_rate})
    for text in growth:
        tenant, sep, factor = text.partition("=")
        try:
            value = float(factor)
        except ValueError:
            value = None
        if not sep or not tenant or value is None:
            fail(f"--growth: '{text}' is not TENANT=FACTOR")
        edits.append({"edit": "workload_growth", "tenant": tenant, "factor": value})
    return edits


def _sampled(s: dict[str, Any]) -> str:
    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    plural = "s" if s["samples"] > 1 else ""
    parts = [
        f"sampled forecast, seed {s['seed']}, {s['samples']} sample{plural} (service / what-if)"
    ]
    b, v = s["base"], s["variant"]
    if s["failure_model"]:
        parts.append(
            f"{s['failure_model']} failures expected {b['expected_failures']:.1f} / "
            f"{v['expected_failures']:.1f}, drawn {mean(b['failures']):.1f} / "
            f"{mean(v['failures']):.1f}, live jobs interrupted {mean(b['interrupted']):.1f} / "
            f"{mean(v['interrupted']):.1f}"
        )
    if s["history_days"] is not None:
        rates = ", ".join(
            f"{a['tenant']} {a['rate_per_day']:.1f}/day x{a['growth']:g}" for a in s["arrivals"]
        )
        parts.append(
            f"arrivals from the last {s['history_days']:g} days {mean(b['arrivals']):.1f} / "
            f"{mean(v['arrivals']):.1f}" + (f": {rates}" if rates else "")
        )
    return "; ".join(parts)


@app.command("whatif")
def whatif(
    *,
    policy: Annotated[str | None, typer.Option("--policy", help="Ordering policy.")] = None,
    backfill: Annotated[str | None, typer.Option("--backfill", help="easy | none.")] = None,
    power_cap: Annotated[
        str | None, typer.Option("--power-cap", help="on | off (the service: on).")
    ] = None,
    edit: Annotated[
        list[str] | None,
        typer.Option("--edit", help='A scenario edit as JSON, e.g. \'{"edit": "add_gpus", ...}\'.'),
    ] = None,
    link_factor: Annotated[
        float | None, typer.Option("--link-factor", help="Every link's bandwidth times this.")
    ] = None,
    failure_rate: Annotated[
        float | None, typer.Option("--failure-rate", help="The failure rate times this.")
    ] = None,
    growth: Annotated[
        list[str] | None, typer.Option("--growth", help="TENANT=FACTOR: it submits more.")
    ] = None,
    horizon_days: Annotated[float, typer.Option("--horizon-days")] = 30.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampled: the seed.")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Sampled: seeds, 1 to 8.")] = 1,
    history_days: Annotated[
        float, typer.Option("--history-days", help="Growth: resample this many days.")
    ] = 7.0,
    as_json: Json = False,
) -> None:
    """Fork the live state now and forecast it as the service runs and with knobs changed."""
    if power_cap not in (None, "on", "off"):
        fail(f"--power-cap: '{power_cap}' is not on or off")
    body: dict[str, Any] = {
        "horizon_days": horizon_days,
        "samples": samples,
        "history_days": history_days,
    }
    given = {"policy": policy, "backfill": backfill, "seed": seed}
    body |= {key: value for key, value in given.items() if value is not None}
    if power_cap is not None:
        body["power_cap"] = power_cap == "on"
    edits = _edits(edit or [], link_factor, failure_rate, growth or [])
    if edits:
        body["edits"] = edits
    with client() as api:
        r = api.whatif(body)
    if as_json:
        print_json(r)
        return
    b, v = r["base"], r["variant"]
    out.print(
        f"{b['policy']}/{b['backfill']} (the service) against {v['policy']}/{v['backfill']}, "
        f"{r['horizon_s'] / 86400:g} days ahead; {r['jobs_total']} jobs, {r['seconds']:.2f} s"
        + (f"; requeued: {', '.join(map(str, r['requeued']))}" if r["requeued"] else "")
    )
    if r.get("sampled"):
        out.print(_sampled(r["sampled"]))
    tenants = Table("tenant", "pending", "started", "wait, service", "wait, what-if", "moves")
    for t in r["tenants"]:
        tenants.add_row(
            t["tenant"],
            str(t["pending"]),
            f"{t['started_base']} / {t['started_variant']}",
            _delta(t["mean_wait_base_s"]),
            _delta(t["mean_wait_variant_s"]),
            _delta(t["mean_start_delta_s"]),
        )
    out.print(tenants)
    table = Table("id", "tenant", "GPUs", "state", "start, service", "start, what-if", "moves")
    for j in r["jobs"][:JOBS_SHOWN]:
        table.add_row(
            str(j["id"]),
            j["tenant"],
            str(j["gpus"]),
            j["state"],
            _when(j["base_start"]),
            _when(j["variant_start"]),
            _delta(j["start_delta_s"]),
        )
    out.print(table)
