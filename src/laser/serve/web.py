"""``laser serve --web``: each served model's browser page (``laser web``) under ``/web/{model}/``.

The site of a model version is built on its first page request (a torch artifact is exported to ONNX
first) into the server's private workspace, then served as static files with the COOP/COEP headers
WASM threads need. The page runs the model in the visitor's browser; it makes no call to the OIP routes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from laser.serve.errors import ServeError
from laser.serve.repository import Repository


class WebPages:
    def __init__(self, repository: Repository, root: Path):
        self.repository, self.root = repository, root
        self._sites: dict[tuple[str, str], Path] = {}
        self._lock = asyncio.Lock()

    async def site(self, name: str) -> Path:
        mv = self.repository.get(name)  # 404 / 503 ServeErrors for unknown or loading models
        key = (mv.name, mv.version)
        async with self._lock:  # one build at a time: building is CPU work (export, copy ~40 MiB)
            if key not in self._sites:
                self._sites[key] = await asyncio.to_thread(_build, mv.artifact, self.root / mv.name / mv.version)
        return self._sites[key]

    async def file(self, name: str, rel: str) -> Path:
        site = await self.site(name)
        path = (site / (rel or "index.html")).resolve()
        if not path.is_relative_to(site.resolve()) or not path.is_file():
            raise ServeError(404, f"no file {rel[:100]!r} in the page of model {name!r}")
        return path

    def routes(self, endpoint: Any) -> list[Any]:
        from starlette.responses import FileResponse, RedirectResponse
        from starlette.routing import Route

        from laser.web.server import ISOLATION, TYPES

        async def index(request: Any) -> Any:
            return RedirectResponse(f"/web/{request.path_params['model']}/", status_code=308)

        async def static(request: Any) -> Any:
            path = await self.file(request.path_params["model"], request.path_params["path"])
            return FileResponse(path, headers={**ISOLATION, "Cache-Control": "no-cache"},
                                media_type=TYPES.get(path.suffix.lower()))

        return [Route("/web/{model}", endpoint(index), methods=["GET"]),
                Route("/web/{model}/{path:path}", endpoint(static), methods=["GET", "HEAD"])]


def _build(artifact: Any, out: Path) -> Path:
    from laser.web import as_onnx, write_site

    return write_site(as_onnx(artifact), out)
