"""HTTP routes of the local web editor (FastAPI).  Sessions do the work (pipeline/webui/session.py)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from pathlib import Path
from typing import Annotated, Callable, Dict, List, Literal, Optional, Sequence, Tuple

import uvicorn
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import PhotodragError
from common.options import Setting, settings_of
from drag.config import DRAG_OPTIONS, DragConfig
from drag.presets import PRESETS
from pipeline.webui.guard import HostGuard
from pipeline.webui.seed_session import SeedSession, create_seed_session, installed_models
from pipeline.webui.session import (
    MAX_DRAG_STEPS,
    MAX_UPLOAD_BYTES,
    ServerBusy,
    Session,
    SessionManager,
    disk_full,
    no_space_message,
)

STATIC = Path(__file__).resolve().parent / "static"
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # a JSON number, not "3" or true
Count = Annotated[int, Field(strict=True)]


class Body(BaseModel):
    """A request body: unknown fields and wrong types are refused by FastAPI's validation (422)."""

    model_config = ConfigDict(extra="forbid")


class InvertBody(Body):
    face: Count = Field(0, ge=0)


class SeedBody(Body):
    """DragGAN's start: a model id from /api/models, a seed, truncation psi, the drag's latent space."""

    model: Annotated[str, Field(strict=True, min_length=1, max_length=200)]
    seed: Count = Field(0, ge=0, lt=2**32)
    psi: Number = Field(0.7, ge=-10, le=10)
    latent: Literal["w+", "w"] = "w+"


class DragPairBody(Body):
    handle: Tuple[Number, Number]
    target: Tuple[Number, Number]


PresetAmounts = Annotated[Dict[Annotated[str, Field(strict=True, max_length=40)], Number], Field(max_length=20)]


class PresetsBody(Body):
    """Edits by name: {name: amount}; names and ranges are checked by drag.presets (a 400)."""

    presets: PresetAmounts = Field(default_factory=dict)


def setting_field(s: Setting) -> tuple:
    """A request field for one drag setting: its type and range from DragConfig; None = the server's value."""
    kind = Count if s.kind is int else Number
    return Optional[kind], Field(None, ge=s.ge, gt=s.gt, le=s.le, description=s.help)


class DragBase(Body):
    drags: List[DragPairBody] = Field(default_factory=list, max_length=100)
    presets: PresetAmounts = Field(default_factory=dict)
    mask: Optional[Annotated[str, Field(strict=True)]] = Field(None, max_length=30 * 2**20)
    steps: Count = Field(DragConfig().steps, ge=1, le=MAX_DRAG_STEPS)

    def settings(self) -> Dict[str, float]:
        """The drag settings this request gives (steps and the ones it sets), for DragConfig."""
        given = {s.name: getattr(self, s.name) for s in DRAG_SETTINGS}
        return {"steps": self.steps, **{k: v for k, v in given.items() if v is not None}}


# lr, lambda_mask, r1, r2: generated from DragConfig's declared settings, so the page takes what the CLI takes
DRAG_SETTINGS = settings_of(DragConfig, tuple(n for n in DRAG_OPTIONS if n != "steps"))
DragBody = create_model("DragBody", __base__=DragBase, **{s.name: setting_field(s) for s in DRAG_SETTINGS})


def validation_message(errors) -> str:
    """FastAPI's validation errors as one line naming each field: `body.steps: Input should be ...`."""
    parts = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class CutOffRequests(logging.Filter):
    """A request that the bounded shutdown cancelled is one log line, not uvicorn's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            record.msg, record.args = "a request still open at shutdown was cut off", ()
            record.exc_info = record.exc_text = None
        return True


def server_log_config(base: dict) -> dict:
    """uvicorn's logging config (`base`, uvicorn.config.LOGGING_CONFIG) with CutOffRequests on its stderr."""
    config = copy.deepcopy(base)
    config.setdefault("filters", {})["cut_off"] = {"()": CutOffRequests}
    config["handlers"]["default"].setdefault("filters", []).append("cut_off")
    return config


def run_server(app: FastAPI, host: str, port: int, shutdown_s: float) -> None:
    """Serve `app` with uvicorn until stopped; open requests get at most `shutdown_s` seconds."""
    log_config = server_log_config(uvicorn.config.LOGGING_CONFIG)
    uvicorn.run(
        app, host=host, port=port, log_level="warning", log_config=log_config, timeout_graceful_shutdown=shutdown_s
    )


def create_app(
    manager: SessionManager, *, allowed_hosts: Sequence[str], reap_every_s: float = 2.0, close_timeout_s: float = 5.0
) -> FastAPI:
    """The editor's app.  `allowed_hosts` are the Host values it answers (`name:port`, or a bare
    name for any port; see guard.served_hosts); any other Host or Origin gets a 403."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async def reaper():
            while True:
                await asyncio.sleep(reap_every_s)
                await run_in_threadpool(manager.reap)

        task = asyncio.create_task(reaper())
        yield
        task.cancel()
        await run_in_threadpool(manager.close_all, close_timeout_s)

    app = FastAPI(title="photodrag", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(HostGuard, hosts=list(allowed_hosts))
    app.state.manager = manager

    def session(sid: str) -> Session:
        try:
            return manager.get(sid)
        except KeyError:
            raise HTTPException(404, "no such session (it may have expired); upload the photo again") from None

    _add_error_handlers(app, manager)
    _add_page_routes(app, manager)
    _add_session_routes(app, manager, session)
    _add_downloads(app, session)
    return app


def _add_error_handlers(app: FastAPI, manager: SessionManager) -> None:
    """Errors as JSON: bad input 400, a full disk 507, too busy 503, a body that does not validate 422."""

    def no_space() -> JSONResponse:
        return JSONResponse({"error": no_space_message(manager.root)}, status_code=507)

    @app.exception_handler(PhotodragError)
    async def photodrag_error(request: Request, exc: PhotodragError):
        return no_space() if disk_full(exc) else JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError):
        if disk_full(exc):
            return no_space()
        raise exc  # anything else is a server error, as before

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """A body the framework could not spool to its temp folder is a full disk, not a bad body."""
        return no_space() if disk_full(exc) else await http_exception_handler(request, exc)

    @app.exception_handler(ServerBusy)
    async def busy(request: Request, exc: ServerBusy):
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "30"})

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"error": validation_message(errors), "detail": errors}, status_code=422)


def _add_page_routes(app: FastAPI, manager: SessionManager) -> None:
    """The page, its script, the server's info and preset list, and the upload that starts a session."""

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/app.js")
    async def script():
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    @app.get("/api/info")
    async def info():
        svc = manager.services
        return {
            "model": Path(svc.model_name).name,
            "resolution": svc.resolution,
            "max_upload_mb": MAX_UPLOAD_BYTES // 2**20,
            "inversion": svc.inversion_config.options(),
        }

    @app.post("/api/session")
    async def upload(file: UploadFile = File(...)):
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        s = await run_in_threadpool(manager.create, data, file.filename or "")
        return {
            "id": s.id,
            "width": s.photo.size[0],
            "height": s.photo.size[1],
            "faces": [
                {"index": i, "box": [round(v, 1) for v in f.box], "score": round(f.score, 3)}
                for i, f in enumerate(s.faces)
            ],
        }

    @app.get("/api/models")
    async def models():
        """The generators a seed can start from (the served one first)."""
        return await run_in_threadpool(installed_models, manager.services)

    @app.post("/api/seed")
    async def seed(body: SeedBody):
        s = await run_in_threadpool(create_seed_session, manager, body.model, body.seed, body.psi, body.latent)
        return {"id": s.id, "kind": "seed", "width": s.size, "height": s.size, "faces": []}

    @app.get("/api/presets")
    async def preset_list():
        return [
            {"name": p.name, "description": p.description, "min": p.amount_range[0], "max": p.amount_range[1]}
            for p in PRESETS.values()
        ]


def _add_session_routes(app: FastAPI, manager: SessionManager, session: Callable[[str], Session]) -> None:
    """What the page does with its session: watch, pick the face, drag, stop, undo, reset, close."""

    @app.get("/api/session/{sid}/frame.jpg")
    async def frame(sid: str):
        return Response(session(sid).frame(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/session/{sid}/status")
    async def status(sid: str):
        return session(sid).status()

    @app.post("/api/session/{sid}/invert")
    async def invert(sid: str, body: InvertBody):
        session(sid).choose_face(body.face)
        return {"ok": True}

    @app.post("/api/session/{sid}/drag")
    async def drag(sid: str, body: DragBody):  # type: ignore[valid-type]
        if not body.drags and not any(body.presets.values()):
            raise HTTPException(400, "click a handle and then a target first, or move a preset slider")
        session(sid).start_drag([d.model_dump() for d in body.drags], body.mask, body.settings(), body.presets)
        return {"ok": True}

    @app.post("/api/session/{sid}/presets")
    async def presets(sid: str, body: PresetsBody):
        """The arrows these presets would drag (photo pixels), computed from the session's landmarks."""
        return session(sid).preset_arrows(body.presets)

    @app.post("/api/session/{sid}/stop")
    async def stop(sid: str):
        session(sid).stop()
        return {"ok": True}

    @app.post("/api/session/{sid}/undo")
    async def undo(sid: str):
        await run_in_threadpool(session(sid).undo)
        return {"ok": True}

    @app.post("/api/session/{sid}/reset")
    async def reset(sid: str):
        await run_in_threadpool(session(sid).reset)
        return {"ok": True}

    @app.post("/api/session/{sid}/close")
    async def close(sid: str):
        await run_in_threadpool(manager.close, sid)
        return {"ok": True}


def _add_downloads(app: FastAPI, session: Callable[[str], Session]) -> None:
    """The session's results as files: the edited photo, its recipe and painted mask, the whole run
    folder; a seed session's latent."""

    @app.get("/api/session/{sid}/result")
    async def result(sid: str):
        data, name, media = await run_in_threadpool(session(sid).result)
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/session/{sid}/recipe")
    async def recipe(sid: str):
        return Response(
            json.dumps(session(sid).recipe(), indent=2),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="recipe.json"'},
        )

    def seed_session(sid: str) -> SeedSession:
        s = session(sid)
        if not isinstance(s, SeedSession):
            raise HTTPException(400, "a photo edit's latent belongs to its tuned generator: download the run folder")
        return s

    @app.get("/api/session/{sid}/latent.safetensors")
    async def latent(sid: str):
        data = await run_in_threadpool(seed_session(sid).latent_file)
        headers = {"Content-Disposition": 'attachment; filename="w_edited.safetensors"'}
        return Response(data, media_type="application/octet-stream", headers=headers)

    @app.get("/api/session/{sid}/mask.png")
    async def mask(sid: str):
        """The painted mask of the recipe's round, to keep next to recipe.json (its "mask" path)."""
        data = session(sid).mask_file()
        return Response(
            data, media_type="image/png", headers={"Content-Disposition": 'attachment; filename="mask.png"'}
        )

    @app.get("/api/session/{sid}/run.zip")
    async def run_zip(sid: str):
        data = await run_in_threadpool(session(sid).run_zip)
        return Response(
            data, media_type="application/zip", headers={"Content-Disposition": 'attachment; filename="run.zip"'}
        )
