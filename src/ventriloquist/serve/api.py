"""``ventriloquist serve``: a REST API over the job queue (FastAPI; OpenAPI docs at ``/docs``).

    POST   /v1/videos              multipart: face, audio, options -> 202 {"id", ...}
    GET    /v1/videos/{id}         status and progress
    GET    /v1/videos/{id}/result  the MP4 once done
    DELETE /v1/videos/{id}         cancel (or delete a finished job)
    GET    /v1/health              liveness and queue figures

Uploads are checked by content, whatever their names say (415), bounded in size (413), and
saved under names the server chooses; a full queue answers 429 with Retry-After. With an API
key (``--api-key`` or VENTRILOQUIST_API_KEY), /v1/videos* need it in ``X-API-Key`` or as a
bearer token.
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from .. import __version__
from ..config import OPTION_SPECS, OPTIONS
from ..emotion.vocabulary import EMOTIONS
from ..errors import InputError
from ..motion.speech import release_freed_memory
from .jobs import DONE, JobQueue, QueueFull

API_KEY_ENV = "VENTRILOQUIST_API_KEY"
MAX_VIDEO_PIXELS = 1920 * 1080      # a face video to dub is at most full HD (its frames are decoded one by one)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1                 # videos rendered at once (each uses about a core)
    max_queued: int = 16             # jobs waiting beyond this are refused with 429
    max_upload_mb: float = 50.0      # a request body larger than this is refused with 413
    time_limit_s: float = 600.0      # a job running longer is stopped and fails
    keep_s: float = 3600.0           # finished jobs and their videos are removed after this
    workdir: Path | None = None      # job folders (default: a temporary folder removed at exit)
    api_key: str | None = None


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 before the application
    sees any of it (by its Content-Length, or while it streams in); smaller bodies are spooled (to
    disk past 1 MB) and replayed to the application."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(send, self.limit)
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                return await _too_large(send, self.limit)
            spool.write(body)
            if not message.get("more_body"):
                break
        spool.seek(0)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()              # after the body: wait for the client to go
            chunk = spool.read(1 << 16)
            sent = spool.tell() >= size
            return {"type": "http.request", "body": chunk, "more_body": not sent}
        try:
            await self.app(scope, replay, send)
        finally:
            spool.close()


async def _too_large(send, limit: int) -> None:
    import json
    body = json.dumps({"detail": f"the upload is larger than {limit / 2 ** 20:g} MB"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _check_face(path: Path) -> Path:
    """The face upload read as the CLI reads it, and the path to render from. A photo's size is checked
    from its header before any pixel is decoded (a decompression bomb is refused, 413, at no cost); what
    is not a photo but a video (its content says so, whatever its name) is renamed to be dubbed."""
    from ..face.detect import TooManyPixels, load_image
    from ..video import video_info
    try:
        load_image(path)
        return path
    except TooManyPixels as exc:
        raise _TooLarge(str(exc).replace(f"face image {path}", "the face photo")) from None
    except InputError:
        pass
    try:
        info = video_info(path)
    except InputError:
        info = None
    if info is None or not info.get("frames", 1) or not info.get("width"):
        raise _Unsupported("face is neither an image nor a video; send a JPEG, PNG, WebP, BMP or TIFF photo, or "
                           "an MP4, MOV, MKV or WebM video to dub") from None
    if info["width"] * info["height"] > MAX_VIDEO_PIXELS:
        raise _TooLarge(f"the face video is {info['width']}x{info['height']}; send one of at most 1920x1080")
    return path.rename(path.with_name("face.mp4"))


def _check_audio(path: Path) -> None:
    from ..audio import load_audio
    try:
        load_audio(path)
    except InputError as exc:
        if "could not decode" in str(exc) or "no audio track" in str(exc):
            raise _Unsupported("audio is not a sound file; send WAV, FLAC, MP3, M4A, OGG or a video with sound") from None
        raise InputError(str(exc).replace(str(path), "audio")) from None


class _Unsupported(Exception):
    pass


class _TooLarge(Exception):
    pass


def _send_file(path: Path, media_type: str, filename: str) -> StreamingResponse | None:
    """``path`` sent from a handle opened now, or None if it is gone. A DELETE racing the download then
    removes the name, not the bytes on their way; FileResponse opens by name later and fails with a 500."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None

    def chunks():
        with f:
            while chunk := f.read(1 << 16):
                yield chunk
    return StreamingResponse(chunks(), media_type=media_type, headers={
        "content-length": str(os.fstat(f.fileno()).st_size),
        "content-disposition": f'attachment; filename="{filename}"'})


def _option_form(name: str):
    """A form field for a per-video option, read as text (checked by ``generate_config``, one message
    everywhere) but documented with its type, range, choices and default (``config.OPTION_SPECS``)."""
    spec = OPTION_SPECS[name]

    def schema(s: dict) -> None:
        s.clear()
        s.update({"type": {int: "integer", float: "number"}.get(spec.kind, "string"), "description": spec.doc})
        if spec.lo is not None:
            s.update({"minimum": spec.lo, "maximum": spec.hi})
        if spec.choices:
            s["enum"] = list(spec.choices)
        if spec.default is not None:
            s["default"] = spec.default
    return Form(None, json_schema_extra=schema)


ERRORS = {401: "missing or wrong API key", 404: "no such job (or removed after --keep)",
          409: "the job is not done (yet)", 413: "the upload, or the photo's pixel count, is too large",
          415: "a file is not what its field asks for", 422: "an option or a file is unusable (one message)",
          429: "the queue is full; Retry-After says when to retry"}


def _responses(*codes: int) -> dict:
    return {c: {"description": ERRORS[c], "content": {"application/json": {"example": {"detail": ERRORS[c]}}}}
            for c in codes}


def _swagger_assets() -> str:
    """Swagger UI's files as the ``swagger-ui-py`` package ships them (found without importing it)."""
    import importlib.util
    spec = importlib.util.find_spec("swagger_ui")
    folder = Path(list(spec.submodule_search_locations)[0]) / "static" if spec else None
    if folder is None or not (folder / "swagger-ui-bundle.js").is_file():
        from ..errors import MissingWeightsError
        raise MissingWeightsError("the API docs page needs the swagger-ui-py package; install it with "
                                  "`pip install swagger-ui-py`")
    return str(folder)


def create_app(cfg: ServerConfig, jobs: JobQueue):
    """The ASGI application over ``jobs``: the FastAPI app (``.app``) behind the upload-size limit. Its
    interactive docs (/docs) are served from the packaged Swagger UI, so they work offline."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.security import APIKeyHeader, HTTPBearer
    from fastapi.staticfiles import StaticFiles
    app = FastAPI(title="ventriloquist", version=__version__, docs_url=None, redoc_url=None,
                  description="One speech recording + one face photo -> a talking-head video (MP4).")
    key = cfg.api_key
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's API key, if it has one")
    bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")
    app.mount("/docs-assets", StaticFiles(directory=_swagger_assets()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="ventriloquist API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    def authorised(x_api_key: str | None = Depends(header_key), token=Depends(bearer)):
        if key is None:
            return
        given = x_api_key or (token.credentials if token is not None else "")
        if not secrets.compare_digest(given or "", key):
            raise HTTPException(401, "missing or wrong API key; send it in X-API-Key or as a bearer token")

    def not_found(job_id: str) -> HTTPException:
        return HTTPException(404, f"no job {job_id!r} (unknown, or removed after {cfg.keep_s:g} s)")

    def job_or_404(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise not_found(job_id)
        return job

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__, **jobs.stats()}

    @app.post("/v1/videos", status_code=202, dependencies=[Depends(authorised)],
              responses=_responses(401, 413, 415, 422, 429))
    def create(face: UploadFile = File(..., description="photo with one clearly visible face, or a video of one "
                                      "to dub (every frame kept, the mouth speaking the audio)"),
               audio: UploadFile = File(..., description="speech: any common audio file or a video with sound"),
               size: str | None = _option_form("size"), crop: str | None = _option_form("crop"),
               fps: str | None = _option_form("fps"), expression: str | None = _option_form("expression"),
               articulation: str | None = _option_form("articulation"), emotion: str | None = _option_form("emotion"),
               emotion_intensity: str | None = _option_form("emotion_intensity"),
               head_motion: str | None = _option_form("head_motion"),
               timeline: UploadFile | None = File(None, description="emotion timeline, JSON or CSV (README)"),
               seed: str | None = _option_form("seed"), face_index: str | None = _option_form("face_index"),
               loop: str | None = _option_form("loop"), video_end: str | None = _option_form("video_end")):
        given = {"size": size, "crop": crop, "fps": fps, "expression": expression, "articulation": articulation,
                 "emotion": emotion, "emotion_intensity": emotion_intensity, "head_motion": head_motion, "seed": seed,
                 "face_index": face_index, "loop": loop, "video_end": video_end}
        options = {k: given[k] for k in OPTIONS if given[k] not in (None, "")}
        job_id, folder = jobs.new_folder()
        try:
            paths = {}
            uploads = [("face", face), ("audio", audio)] + ([("timeline", timeline)] if timeline is not None else [])
            for name, upload in uploads:
                paths[name] = folder / name                    # never the client's file name
                with open(paths[name], "wb") as f:
                    shutil.copyfileobj(upload.file, f, 1 << 20)
            paths["face"] = _check_face(paths["face"])
            _check_audio(paths["audio"])
            if "timeline" in paths:                             # JSON or CSV by its content, whatever its name
                head = paths["timeline"].read_bytes()[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
                paths["timeline"] = paths["timeline"].rename(
                    folder / ("timeline.json" if head[:1] in (b"[", b"{") else "timeline.csv"))
            job = jobs.submit(job_id, paths["face"], paths["audio"], options, paths.get("timeline"))
        except _Unsupported as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(415, str(exc)) from None
        except _TooLarge as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(413, str(exc)) from None
        except InputError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(422, str(exc).replace(str(folder) + "/", "")) from None   # no server paths
        except QueueFull as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})
        except BaseException:                                  # a bug must not leave the upload behind
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            release_freed_memory()       # the photo's decode, in one of many request threads' malloc arenas
        return {**job.public(), "status_url": f"/v1/videos/{job.id}", "result_url": f"/v1/videos/{job.id}/result"}

    @app.get("/v1/videos/{job_id}", dependencies=[Depends(authorised)], responses=_responses(401, 404))
    def status(job_id: str) -> dict:
        return job_or_404(job_id).public()

    @app.get("/v1/videos/{job_id}/result", dependencies=[Depends(authorised)], response_class=FileResponse,
             responses=_responses(401, 404, 409))
    def result(job_id: str):
        job = job_or_404(job_id)
        if job.state != DONE:
            raise HTTPException(409, f"job {job_id} is {job.state}" + (f": {job.error}" if job.error else "")
                                + ("; poll its status until it is done" if job.state in ("queued", "running") else ""))
        response = _send_file(job.result, "video/mp4", f"{job_id}.mp4")
        if response is None:                                 # deleted since
            raise not_found(job_id)
        return response

    @app.get("/v1/videos/{job_id}/emotions", dependencies=[Depends(authorised)], response_class=FileResponse,
             responses=_responses(401, 404, 409))
    def emotions(job_id: str):
        """The per-frame emotion that drove the video, as CSV (itself a timeline file)."""
        job = job_or_404(job_id)
        if job.state != DONE:
            raise HTTPException(409, f"job {job_id} is {job.state}; its emotions come with its video")
        response = _send_file(job.emotions, "text/csv", f"{job_id}-emotions.csv")
        if response is None:                                 # deleted since
            raise not_found(job_id)
        return response

    @app.delete("/v1/videos/{job_id}", dependencies=[Depends(authorised)], responses=_responses(401, 404))
    def delete(job_id: str) -> dict:
        job_or_404(job_id)
        job = jobs.cancel(job_id)
        if job is None:                                      # unknown, or a concurrent DELETE removed it
            raise not_found(job_id)
        return job.public()

    return _BodyLimit(app, int(cfg.max_upload_mb * 2 ** 20))


def serve(cfg: ServerConfig) -> None:
    """Load the models once, start the workers and serve until interrupted."""
    import uvicorn

    from .net import check_port
    check_port(cfg.host, cfg.port)
    cfg.api_key = cfg.api_key or os.environ.get(API_KEY_ENV) or None
    with tempfile.TemporaryDirectory(prefix="ventriloquist-jobs-") as tmp:
        jobs = JobQueue(cfg.workdir or Path(tmp), workers=cfg.workers, max_queued=cfg.max_queued,
                        time_limit_s=cfg.time_limit_s, keep_s=cfg.keep_s)
        app = create_app(cfg, jobs)
        print(f"serving on http://{cfg.host}:{cfg.port} (API docs at /docs; {cfg.workers} worker(s)"
              f"{', API key required' if cfg.api_key else ''})", flush=True)
        try:
            uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
        finally:
            jobs.close()
