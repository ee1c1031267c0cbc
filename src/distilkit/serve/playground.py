"""The playground: a page at ``/`` and ``/playground`` to try every served model from a browser.

One static page shipped as package data (``serve/static/playground.*``: plain HTML, CSS and
JavaScript, no build step, no CDN, so it works offline). It talks to the server through the
same JSON API as any client: ``GET /v1/models`` for the models, their parameters and mask
tokens, then ``POST /models/{name}`` (Hugging Face inference format) for each request.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from distilkit.serve.settings import ServeSettings

PAGE_PATHS = ("/", "/playground")
STATIC_PATH = "/playground/static"  # the guard leaves these paths open under --api-key
ASSETS = ("distilkit.serve", "static")
# The page loads nothing but its own files and talks only to this server.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def page_html() -> str:
    """The page's HTML from the package data."""
    return resources.files(ASSETS[0]).joinpath(ASSETS[1], "playground.html").read_text(encoding="utf-8")


def add_playground(app: FastAPI, settings: ServeSettings) -> None:
    """Serve the page at ``PAGE_PATHS`` and its assets under ``STATIC_PATH`` unless turned off."""
    if not settings.playground:
        return
    html = page_html()

    async def playground() -> HTMLResponse:
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    for path in PAGE_PATHS:
        app.add_api_route(path, playground, methods=["GET"], include_in_schema=False)
    app.mount(STATIC_PATH, StaticFiles(packages=[ASSETS]), name="playground-static")
