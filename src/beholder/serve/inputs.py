"""The images of a request: multipart file uploads, or JSON with base64 data or (with --allow-root) paths.

Everything that makes a request unusable as a whole is an HTTP error here: an unsupported content type (415),
too many images (413), a malformed body (400), a path outside the allowed root (403). Whether each image
decodes is decided later, image by image: a bad image is an error row, never a failed request.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from beholder.images import ImageError
from beholder.serve.security import AllowedRoot, PathForbidden

MULTIPART = "multipart/form-data"
JSON = "application/json"


@dataclass(frozen=True)
class ImageInput:
    name: str | None  # echoed as the row's `path`: the upload's filename, or the JSON item's name or path
    data: bytes | None = None  # the encoded image file
    path: Path | None = None  # or a file inside the allowed root, already resolved and checked

    def read(self) -> bytes:
        """The encoded image; a file that cannot be read is an ImageError naming it as the client did."""
        if self.data is not None:
            return self.data
        try:
            return self.path.read_bytes()  # type: ignore[union-attr]
        except OSError as exc:
            raise ImageError(f"cannot open {self.name}: {exc.strerror or exc}") from exc


class JsonImage(BaseModel):
    """One image of a JSON request: `data` or `path`, not both. URLs are never fetched."""

    model_config = ConfigDict(extra="forbid")
    data: str | None = Field(None, description="the encoded image file (JPEG, PNG, WebP, ...), base64")
    path: str | None = Field(None, description="a file inside the server's --allow-root, relative to it")
    name: str | None = Field(None, description="returned as the row's path (default: the path)")


class JsonImages(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[JsonImage]


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` references replaced by the definitions (the page has no `$defs`)."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return inline(schema)


# The request bodies, for the OpenAPI page (the handlers read the body themselves, to enforce the limits).
OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                },
            },
            JSON: {"schema": _inlined(JsonImages.model_json_schema())},
        },
    }
}


async def read_images(request: Request, *, max_images: int, root: AllowedRoot) -> list[ImageInput]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == MULTIPART:
        images = await _multipart(request, max_images)
    elif kind == JSON:
        images = await _json(request, max_images, root)
    else:
        raise HTTPException(415, f"send images as {MULTIPART} (files) or {JSON} (base64 data or paths), not {kind!r}")
    if not images:
        raise HTTPException(400, "the request holds no images")
    return images


def _too_many(n: int | str, max_images: int) -> HTTPException:
    return HTTPException(413, f"{n} images in one request; this server takes at most {max_images}")


async def _multipart(request: Request, max_images: int) -> list[ImageInput]:
    try:
        form = await request.form(max_files=max_images, max_fields=16)
    except StarletteHTTPException as exc:  # Starlette's multipart parser refuses with a 400 and its own message
        if str(exc.detail).startswith("Too many files"):
            raise _too_many("more than " + str(max_images), max_images) from exc
        raise
    try:
        images = []
        for field, value in form.multi_items():
            if not isinstance(value, UploadFile):
                raise HTTPException(400, f"form field {field!r} is not a file; options go in the query string")
            images.append(ImageInput(value.filename, data=await value.read()))
        return images
    finally:
        await form.close()


async def _json(request: Request, max_images: int, root: AllowedRoot) -> list[ImageInput]:
    try:
        body = JsonImages.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise HTTPException(400, errors) from exc
    if len(body.images) > max_images:
        raise _too_many(len(body.images), max_images)
    images = []
    for i, item in enumerate(body.images):
        if (item.data is None) == (item.path is None):
            raise HTTPException(400, f"images[{i}]: give either data (base64) or path")
        if item.data is not None:
            try:
                data = base64.b64decode(item.data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise HTTPException(400, f"images[{i}].data is not valid base64: {exc}") from exc
            images.append(ImageInput(item.name, data=data))
            continue
        try:
            path = root.resolve(item.path)  # type: ignore[arg-type]
        except PathForbidden as exc:
            raise HTTPException(403, str(exc)) from exc
        images.append(ImageInput(item.name or item.path, path=path))
    return images
