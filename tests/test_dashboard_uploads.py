"""Uploaded files: a JPEG or PNG decodes; anything else is refused with a clear message."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dashboards.uploads import MAX_UPLOAD_BYTES, UploadError, decode_upload


def encoded(fmt: str, size=(64, 48), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], len(mode)), dtype=np.uint8)
                    .squeeze(), mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,mode", [("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L")])
def test_jpeg_and_png_decode_to_rgb(fmt, mode):
    image = decode_upload(f"lesion.{fmt.lower()}", encoded(fmt, mode=mode))
    assert image.mode == "RGB" and image.size == (64, 48)


@pytest.mark.parametrize("name,data,says", [
    ("notes.txt", "hello, not an image\n", "not a JPEG or PNG"),
    ("notes.txt", b"hello", "not a JPEG or PNG"),
    ("empty.jpg", b"", "empty"),
    ("picture.gif", b"GIF89a" + b"\0" * 32, "not a JPEG or PNG"),
    ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 64, "broken.jpg"),
    ("huge.png", b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_UPLOAD_BYTES, "over the 20 MB limit"),
])
def test_bad_uploads_are_refused_with_a_message(name, data, says):
    with pytest.raises(UploadError, match=says) as error:
        decode_upload(name, data)
    assert "/tmp" not in str(error.value)  # names the upload, not a temporary file


def test_truncated_jpeg_is_refused():
    data = encoded("JPEG", size=(300, 200))
    with pytest.raises(UploadError, match="truncated.jpg"):
        decode_upload("truncated.jpg", data[: len(data) // 2])
