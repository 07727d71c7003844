"""The pilot bundles, served to batch nodes: ``GET /autopilot/pilot/<version>.pyz`` and ``.pyz.sha256``.

A bundle is code, not data: it needs no login, and it can be cached. The bundles are those of the
installation's shelf (``autopilot_ops.pilot.shelf``: ``current`` built on first request). A versioned bundle
never changes (cached for a day, ``immutable``); ``current`` is revalidated (``no-cache``) against its ETag,
its sha256.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, PlainTextResponse, Response

from autopilot_ops.pilot.shelf import CURRENT, BundleNotFound, BundleShelf, StoredBundle

router = APIRouter(prefix="/pilot", tags=["AutoPilot pilot bundles"])

#: What the response headers name the served version by.
VERSION_HEADER = "X-AutoPilot-Pilot-Version"


def _bundle(request: Request, version: str) -> StoredBundle:
    shelf: BundleShelf = request.app.state.bundle_shelf
    try:
        return shelf.get(version)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except BundleNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def _cache_headers(version: str, bundle: StoredBundle) -> dict[str, str]:
    return {
        "ETag": f'"{bundle.sha256}"',
        "Cache-Control": "no-cache" if version == CURRENT else "public, max-age=86400, immutable",
        VERSION_HEADER: bundle.version,
    }


Version = Annotated[str, PathParam(min_length=1, max_length=64)]


@router.get("/{version}.pyz", name="pilot_bundle", response_class=FileResponse)
def pilot_bundle(version: Version, request: Request) -> Response:
    """The bundle of ``version`` (or ``current``): ``304`` when ``If-None-Match`` names its sha256."""
    bundle = _bundle(request, version)
    headers = _cache_headers(version, bundle)
    if request.headers.get("if-none-match") in (headers["ETag"], bundle.sha256, "*"):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return FileResponse(bundle.path, media_type="application/zip", filename=bundle.path.name, headers=headers)


@router.get("/{version}.pyz.sha256", name="pilot_bundle_sha256", response_class=PlainTextResponse)
def pilot_bundle_sha256(version: Version, request: Request) -> PlainTextResponse:
    """``<sha256>  <file name>``, as ``sha256sum`` prints it."""
    bundle = _bundle(request, version)
    return PlainTextResponse(f"{bundle.sha256}  {bundle.path.name}\n", headers=_cache_headers(version, bundle))
