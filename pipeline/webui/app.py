"""HTTP routes of the local web editor (FastAPI).  Sessions do the work (pipeline/webui/session.py)."""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pipeline.errors import PhotodragError
from pipeline.webui.session import MAX_UPLOAD_BYTES, Session, SessionManager

STATIC = Path(__file__).resolve().parent / "static"


def create_app(manager: SessionManager, reap_every_s: float = 2.0) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        async def reaper():
            while True:
                await asyncio.sleep(reap_every_s)
                manager.reap()
        task = asyncio.create_task(reaper())
        yield
        task.cancel()
        for sid in list(manager.sessions):
            await run_in_threadpool(manager.close, sid)

    app = FastAPI(title="photodrag", lifespan=lifespan, docs_url=None, redoc_url=None)

    def session(sid: str) -> Session:
        try:
            return manager.get(sid)
        except KeyError:
            raise HTTPException(404, "no such session (it may have expired); upload the photo again") from None

    @app.exception_handler(PhotodragError)
    async def photodrag_error(request: Request, exc: PhotodragError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/app.js")
    async def script():
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    @app.get("/api/info")
    async def info():
        svc = manager.services
        return {"model": Path(svc.model_name).name, "resolution": svc.resolution, "max_upload_mb": MAX_UPLOAD_BYTES // 2**20}

    @app.post("/api/session")
    async def upload(file: UploadFile = File(...)):
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        s = await run_in_threadpool(manager.create, data, file.filename or "")
        return {"id": s.id, "width": s.photo.size[0], "height": s.photo.size[1],
                "faces": [{"index": i, "box": [round(v, 1) for v in f.box], "score": round(f.score, 3)}
                          for i, f in enumerate(s.faces)]}

    @app.get("/api/session/{sid}/frame.jpg")
    async def frame(sid: str):
        return Response(session(sid).frame(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/session/{sid}/status")
    async def status(sid: str):
        return session(sid).status()

    @app.post("/api/session/{sid}/invert")
    async def invert(sid: str, request: Request):
        body = await _json(request)
        session(sid).choose_face(int(body.get("face", 0)))
        return {"ok": True}

    @app.post("/api/session/{sid}/drag")
    async def drag(sid: str, request: Request):
        body = await _json(request)
        drags = body.get("drags")
        if not isinstance(drags, list) or not drags:
            raise HTTPException(400, "click a handle and then a target first")
        session(sid).start_drag(drags, body.get("mask"), int(body.get("steps", 300)))
        return {"ok": True}

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

    @app.get("/api/session/{sid}/result")
    async def result(sid: str):
        data, name, media = await run_in_threadpool(session(sid).result)
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/session/{sid}/recipe")
    async def recipe(sid: str):
        return Response(json.dumps(session(sid).recipe(), indent=2), media_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="recipe.json"'})

    @app.get("/api/session/{sid}/run.zip")
    async def run_zip(sid: str):
        data = await run_in_threadpool(session(sid).run_zip)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="run.zip"'})

    return app


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the request body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body
