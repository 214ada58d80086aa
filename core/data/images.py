"""Find HAM10000 images by image_id under a root (folders or zips) and decode them safely."""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MASK_SUFFIX = "_segmentation"  # lesion masks (the Dataverse segmentations, the demo's masks)
# HAM10000 originals are 600x450 and most dermoscopes stay under 30 MP; a bigger image is
# far more likely a decompression bomb or a mistake than a lesion photo.
MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class ImageRef:
    """Where one image lives: a file, or a member of a zip archive."""

    path: Path
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def index_images(root: str | Path) -> dict[str, ImageRef]:
    """Map image_id (file stem) to its location, searching every folder and zip under root.

    Plain files win over zip members, so a zip that was unpacked in place reads from disk.
    """
    found: dict[str, ImageRef] = {}
    zips: list[Path] = []
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        for name in sorted(filenames):
            path = Path(dirpath) / name
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES and not path.stem.endswith(MASK_SUFFIX):
                found.setdefault(path.stem, ImageRef(path))
            elif suffix == ".zip":
                zips.append(path)
    for archive in sorted(zips):
        try:
            with zipfile.ZipFile(archive) as z:
                members = z.namelist()
        except zipfile.BadZipFile:
            continue  # reported by `check` through the images it fails to provide
        for member in members:
            stem, suffix = os.path.splitext(os.path.basename(member))
            if suffix.lower() in IMAGE_SUFFIXES and not stem.endswith(MASK_SUFFIX) and "__MACOSX" not in member:
                found.setdefault(stem, ImageRef(archive, member))
    return found


_open_zips: dict[tuple[int, Path], zipfile.ZipFile] = {}


def read_bytes(ref: ImageRef) -> bytes:
    if ref.member is None:
        return ref.path.read_bytes()
    # One handle per process: DataLoader workers are forked and must not share a file offset.
    key = (os.getpid(), ref.path)
    if key not in _open_zips:
        _open_zips[key] = zipfile.ZipFile(ref.path)
    return _open_zips[key].read(ref.member)


def load_rgb(ref: ImageRef) -> Image.Image:
    """Decode an image fully as 8-bit RGB.

    Grayscale, palette, CMYK and 16-bit images are converted; an alpha channel is
    dropped (the colour underneath is kept). Raises ImageError naming the file for an
    empty, truncated, corrupt or oversized image.
    """
    try:
        data = read_bytes(ref)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise ImageError(f"{ref}: cannot be read ({e})") from None
    if not data:
        raise ImageError(f"{ref}: the file is empty (0 bytes); restore it from the original download")
    too_big = f"is over the {MAX_PIXELS:,}-pixel limit (decompression-bomb guard); resize it or remove it"
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{ref}: {width}x{height} pixels {too_big}")
            img.load()
            if img.mode in ("I;16", "I;16B", "I", "F"):
                img = img.point(lambda v: v / 256).convert("L")
            return img.convert("RGB")
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard fires first at twice its limit
        raise ImageError(f"{ref}: the image {too_big}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{ref}: not a readable image (not a JPEG or PNG, or its header is corrupt)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{ref}: not a readable image ({e}: corrupt or truncated)") from None
