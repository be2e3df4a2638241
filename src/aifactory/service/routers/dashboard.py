"""The web dashboard's static files (issue #21 §1): pages with no data in them; their script
asks the API for everything with the bearer token the user gives it, so it sees exactly
what that token may see. Served with a CSP that allows only this origin's scripts and
styles (no inline script, no CDN: the charts are SVG drawn by charts.js), and frames only
from this origin (the Twin page shows a stored report, itself sandboxed)."""

from __future__ import annotations

import importlib.resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from aifactory.service.errors import responses
from aifactory.service.routers import twin

router = APIRouter(tags=["dashboard"])
# The Twin page's API comes with the dashboard (its reports are opened in the page's frame).
router.include_router(twin.router)

FILES = {  # name -> media type; nothing else is served from here
    "app.js": "text/javascript",
    "charts.js": "text/javascript",
    "pages.js": "text/javascript",
    "app.css": "text/css",
}
PAGES = {
    name: (importlib.resources.files("aifactory.service.dashboard") / name).read_text()
    for name in ("index.html", *FILES)
}
CSP = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; frame-src 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
}


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """The dashboard is the service's front page."""
    return RedirectResponse("/dashboard")


@router.get("/dashboard", response_class=HTMLResponse, responses=responses(422))
def dashboard() -> HTMLResponse:
    """The web dashboard (overview, queues and quotas, jobs, submit, projects, twin).
    Needs a token."""
    return HTMLResponse(PAGES["index.html"], headers=CSP)


@router.get("/dashboard/{name}", include_in_schema=False)
def dashboard_file(name: str) -> Response:
    """One of the dashboard's scripts or its stylesheet."""
    kind = FILES.get(name)
    if kind is None:
        raise HTTPException(404, f"dashboard/{name[:64]}: not found")
    return Response(PAGES[name], media_type=kind, headers=CSP)
