"""Check and decode an uploaded image: JPEG or PNG, under the size limit, decodable.

Decoding goes through core.data.images.load_rgb, the same guarded path the dataset
uses (decompression-bomb limit, 16-bit and alpha handling).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from core.data.images import ImageError, ImageRef, load_rgb

MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


class UploadError(ValueError):
    """An upload that cannot be used; the message is shown to the user as is."""


def decode_upload(filename: str, data: bytes | str) -> Image.Image:
    """The uploaded file as an RGB image, or UploadError saying what is wrong with it."""
    name = Path(filename).name
    if isinstance(data, str):  # the file dropper hands text files over already decoded
        data = data.encode()
    if not data:
        raise UploadError(f"{name} is empty (0 bytes): upload a JPEG or PNG image.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name} is {len(data) / 2**20:.1f} MB, over the {MAX_UPLOAD_MB} MB limit.")
    if not any(data.startswith(signature) for signature in SIGNATURES):
        raise UploadError(f"{name} is not a JPEG or PNG image: upload a dermoscopic photo as .jpg or .png.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            return load_rgb(ImageRef(path))
        except ImageError as e:
            raise UploadError(str(e).replace(str(path), name)) from None
