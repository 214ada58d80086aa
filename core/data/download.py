"""Download HAM10000 from the Harvard Dataverse (doi:10.7910/DVN/DBW86T) through its public API.

By default it fetches the training set (two image zips and the metadata) and the ISIC 2018
Task 3 test set the record also holds (1511 images and their ground truth), on which
`python -m core.evaluate --external` scores trained runs.

Each file streams into NAME.part (resumed with an HTTP Range request after an interruption),
is checked against the size and checksum the dataset record lists, then renamed into
place. Zips are unpacked once into a folder named after the zip. Timeouts, 429 and 5xx
answers are retried with exponential backoff, and a connection that breaks off mid-file
is resumed from the .part file (`retry_policy`).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import mimetypes
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from core.log import add_verbosity_flags, bars_on, setup_logging

log = logging.getLogger(__name__)

DATAVERSE_SERVER = "https://dataverse.harvard.edu"
HAM10000_DOI = "doi:10.7910/DVN/DBW86T"
# The training set, then the ISIC 2018 Task 3 test set (the external test set). The tables
# may be ingested: listed as NAME.tab, fetched as their original upload; a name matches a
# listed name, original name or stem.
TRAINING_FILES = ("HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip", "HAM10000_metadata")
EXTERNAL_TEST_FILES = ("ISIC2018_Task3_Test_Images.zip", "ISIC2018_Task3_Test_GroundTruth")
DEFAULT_FILES = TRAINING_FILES + EXTERNAL_TEST_FILES
UNPACKED_MARKER = ".dermablate_unpacked"
TIMEOUT = (15, 60)  # seconds: connect, and between bytes received
RETRY_STATUSES = (429, 500, 502, 503, 504)
CHUNK = 1 << 20
HASHLIB_NAMES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
MANUAL_HINT = (
    "download HAM10000 by hand from https://doi.org/10.7910/DVN/DBW86T (or Kaggle) "
    "and point --data-root at it"
)


class DermablateDownloadError(RuntimeError):
    """A download that cannot go on; the message says which file, why, and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of the dataset record, described as it will be downloaded."""

    id: int
    listed_name: str  # the name the record shows (HAM10000_metadata.tab)
    name: str  # the name it is saved under (HAM10000_metadata.csv for an ingested table)
    size: int | None
    checksum_type: str | None
    checksum: str | None
    original: bool  # an ingested table, fetched with ?format=original

    def matches(self, wanted: str) -> bool:
        return wanted in (self.listed_name, self.name, Path(self.listed_name).stem)


def list_files(session: requests.Session, server: str, doi: str = HAM10000_DOI) -> list[RemoteFile]:
    """The files of the latest version of the dataset `doi` on `server`."""
    url = f"{server.rstrip('/')}/api/datasets/:persistentId/"
    response = _get(session, url, f"the file list of {doi}", params={"persistentId": doi})
    try:
        entries = response.json()["data"]["latestVersion"]["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise DermablateDownloadError(
            f"{url} did not return a Dataverse dataset record ({e!r}); {MANUAL_HINT}"
        ) from None
    return [_remote_file(entry["dataFile"]) for entry in entries]


def _remote_file(data: dict) -> RemoteFile:
    """Read one `dataFile` entry, choosing the size and name of what ?format=original returns."""
    original = "originalFileFormat" in data or "originalFileName" in data
    checksum = data.get("checksum") or ({"type": "MD5", "value": data["md5"]} if data.get("md5") else {})
    if original:
        name = data.get("originalFileName") or _original_name(data["filename"], data.get("originalFileFormat"))
        size = data.get("originalFileSize")
    else:
        name, size = data["filename"], data.get("filesize")
    # For an ingested table Dataverse stores the checksum of the saved original, not of the
    # generated .tab (IQSS/dataverse#7275), so it is the right one to check the original against.
    return RemoteFile(
        id=int(data["id"]),
        listed_name=data["filename"],
        name=name,
        size=int(size) if size is not None else None,
        checksum_type=checksum.get("type"),
        checksum=checksum.get("value"),
        original=original,
    )


def _original_name(listed: str, content_type: str | None) -> str:
    extension = mimetypes.guess_extension(content_type or "") or Path(listed).suffix
    return Path(listed).stem + extension


def select_files(files: list[RemoteFile], wanted: list[str] | tuple[str, ...]) -> list[RemoteFile]:
    """The files named in `wanted`, in that order; raises naming any the record lacks."""
    missing = [w for w in wanted if not any(f.matches(w) for f in files)]
    if missing:
        listed = ", ".join(f.listed_name for f in files)
        raise DermablateDownloadError(f"the dataset has no file {', '.join(missing)}; it holds: {listed}")
    return [next(f for f in files if f.matches(w)) for w in wanted]


def download_file(session: requests.Session, server: str, remote: RemoteFile, dest: Path) -> Path:
    """Download `remote` into `dest` unless a verified copy is already there; returns its path."""
    target = dest / remote.name
    if target.is_file():
        if _verify_problem(target, remote) is None:
            log.info("%s: already downloaded and verified", remote.name)
            return target
        log.warning("%s: the copy on disk does not match the record; downloading it again", remote.name)
    part = dest / f"{remote.name}.part"
    if part.is_file() and remote.size is not None and part.stat().st_size > remote.size:
        part.unlink()  # longer than the file can be: not a prefix of it
    if not (part.is_file() and part.stat().st_size == remote.size):
        _fetch(session, f"{server.rstrip('/')}/api/access/datafile/{remote.id}", remote, part)
    _check_part(part, remote)
    os.replace(part, target)
    return target


def _fetch(session: requests.Session, url: str, remote: RemoteFile, part: Path, retry: Retry | None = None) -> None:
    """Stream the file into `part`, continuing from its current length when the server allows.

    A connection that breaks off mid-file is resumed from `part` while the session's Retry
    allows another read (`retry` counts them down across the resumptions).
    """
    retry = retry or session.get_adapter(url).max_retries
    offset = part.stat().st_size if part.is_file() else 0
    params = {"format": "original"} if remote.original else None
    headers = {"Range": f"bytes={offset}-"} if offset else None
    ok = (416,) if offset else ()  # 416: the range starts at or past the end
    resume = f"run the command again later to resume it from {part}"
    with _get(session, url, remote.name, params=params, headers=headers, stream=True, ok=ok,
              retry_advice=resume) as response:
        if offset and response.status_code in (206, 416) and not _resumes_at(response, offset):
            # A range we cannot use: start again from byte 0 (no Range header, so this recursion ends).
            part.unlink()
            return _fetch(session, url, remote, part, retry)
        if response.status_code == 200:
            offset = 0  # the server ignored Range and sends the whole file
        with part.open("ab" if offset else "wb") as f, _progress(remote, offset) as bar:
            try:
                for chunk in response.iter_content(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
                return
            except requests.RequestException as e:
                broke, received = e, f.tell()
    try:
        retry = retry.increment("GET", url, error=ProtocolError(str(broke)))
    except MaxRetryError:
        raise DermablateDownloadError(
            f"the download of {remote.name} broke off after {received:,} bytes ({broke}), "
            f"{len(retry.history) + 1} times in a row; {resume}"
        ) from None
    log.warning("%s: the connection broke off after %s bytes; resuming", remote.name, f"{received:,}")
    retry.sleep()
    return _fetch(session, url, remote, part, retry)


def _resumes_at(response: requests.Response, offset: int) -> bool:
    """True for a 206 whose Content-Range starts at `offset`."""
    content_range = response.headers.get("Content-Range", "")
    return response.status_code == 206 and content_range.startswith(f"bytes {offset}-")


def _progress(remote: RemoteFile, offset: int) -> tqdm:
    return tqdm(
        total=remote.size, initial=offset, desc=remote.name, unit="B", unit_scale=True, unit_divisor=1024,
        disable=None if bars_on() else True,  # None: no bar when stderr is not a terminal
    )


def _check_part(part: Path, remote: RemoteFile) -> None:
    """Raise when the finished .part is not the listed file; keep it only when it can be resumed."""
    problem = _verify_problem(part, remote)
    if problem is None:
        return
    if remote.size is not None and part.stat().st_size < remote.size:
        raise DermablateDownloadError(f"{remote.name} is incomplete ({problem}); run the command again to resume it")
    part.unlink()
    raise DermablateDownloadError(
        f"{remote.name} failed verification ({problem}); the partial download was removed: "
        f"run the command again to download it afresh, or {MANUAL_HINT}"
    )


def _verify_problem(path: Path, remote: RemoteFile) -> str | None:
    """What is wrong with `path` as a copy of `remote`, or None when its size and checksum match."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"{size:,} bytes, expected {remote.size:,}"
    if remote.checksum is None:
        return None
    algorithm = HASHLIB_NAMES.get(remote.checksum_type.upper(), remote.checksum_type.lower())
    digest = _file_digest(path, algorithm)
    if digest != remote.checksum.lower():
        return f"checksum mismatch: {remote.checksum_type} {digest}, expected {remote.checksum}"
    return None


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def unpack_zip(path: Path) -> Path:
    """Unpack `path` into a folder named after it, once; returns the folder.

    Every member is checked before anything is written: one that would land outside the
    folder (an absolute path or ..) is refused. The marker file is written last, so an
    interrupted unpack is redone.
    """
    out = path.with_suffix("")
    marker = out / UNPACKED_MARKER
    if marker.is_file():
        return out
    with zipfile.ZipFile(path) as archive:
        root = out.resolve()
        for member in archive.namelist():
            if not (root / member).resolve().is_relative_to(root):
                raise DermablateDownloadError(
                    f"{path.name} holds a member that would be written outside {out}: {member!r}; refusing to unpack it"
                )
        log.info("%s: unpacking into %s", path.name, out)
        archive.extractall(out)
    marker.write_text(f"unpacked from {path.name}\n")
    return out


def download(
    dest: str | Path, server: str = DATAVERSE_SERVER, names: list[str] | tuple[str, ...] = DEFAULT_FILES,
    retry: Retry | None = None,
) -> list[Path]:
    """Download (and unpack, for zips) the named files into `dest`; returns the files' paths.

    `retry` defaults to `retry_policy()`.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _session(retry) as session:
        remotes = select_files(list_files(session, server), names)
        paths = [download_file(session, server, remote, dest) for remote in remotes]
    for path in paths:
        if path.suffix.lower() == ".zip":
            unpack_zip(path)
    return paths


def retry_policy(backoff: float = 1.0, attempts: int = 5) -> Retry:
    """Retry timeouts, broken connections, 429 and 5xx `attempts` times, waiting 0, 2, 4, ... x `backoff`
    seconds between tries (or what Retry-After says). A refused or unresolved connection is retried
    only twice: an offline machine hears so within seconds."""
    return Retry(total=attempts, connect=min(2, attempts), read=attempts, status=attempts,
                 status_forcelist=RETRY_STATUSES, allowed_methods={"GET"}, backoff_factor=backoff,
                 raise_on_status=False)  # the last answer comes back, and _get names its status


def _session(retry: Retry | None = None) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "dermablate-download"
    adapter = HTTPAdapter(max_retries=retry or retry_policy())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _get(
    session: requests.Session, url: str, what: str, ok: tuple[int, ...] = (), retry_advice: str = MANUAL_HINT,
    **kwargs
) -> requests.Response:
    """GET `url`, turning network failures and HTTP errors (other than `ok`) into clear errors.

    `retry_advice` is what to do when the server kept answering with a status worth retrying.
    """
    try:
        response = session.get(url, timeout=TIMEOUT, **kwargs)
    except (requests.ConnectionError, requests.Timeout) as e:
        server = "/".join(url.split("/")[:3])
        raise DermablateDownloadError(f"cannot reach {server}: {_reason(e)}; {MANUAL_HINT}") from None
    if response.status_code >= 400 and response.status_code not in ok:
        response.close()
        retried = response.status_code in RETRY_STATUSES
        attempts = session.get_adapter(url).max_retries.status
        raise DermablateDownloadError(
            f"downloading {what} failed: HTTP {response.status_code} {response.reason} "
            + (f"after {attempts} retries " if retried else "")
            + f"from {response.url}; {retry_advice if retried else MANUAL_HINT}"
        )
    return response


def _reason(error: Exception) -> str:
    """The innermost cause of a requests error, which names DNS failure or refusal plainly."""
    while error.__context__ is not None:
        error = error.__context__
    return str(error) or type(error).__name__


def _format_size(size: int | None) -> str:
    if size is None:
        return "?"
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def print_listing(files: list[RemoteFile]) -> None:
    """One line per file: name as listed, size, and the name it downloads as when different."""
    for f in files:
        saved = f"  (downloads as {f.name})" if f.name != f.listed_name else ""
        print(f"{f.listed_name:<60} {_format_size(f.size):>10}{saved}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", type=Path, default=Path("data/ham10000"), help="folder to download into")
    parser.add_argument("--server", default=DATAVERSE_SERVER, help="Dataverse server (default: %(default)s)")
    parser.add_argument(
        "--files", nargs="+", default=list(DEFAULT_FILES), metavar="NAME",
        help="files of the record to fetch (default: the HAM10000 training set and the ISIC 2018 Task 3 "
        "test set; see --list)",
    )
    parser.add_argument("--list", action="store_true", help="list the files the record holds, and exit")


def run(args: argparse.Namespace) -> int:
    try:
        if args.list:
            with _session() as session:
                print_listing(list_files(session, args.server))
            return 0
        paths = download(args.dest, args.server, args.files)
    except DermablateDownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log.info("done: %d file(s) in %s", len(paths), args.dest)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.data download", description=__doc__.splitlines()[0])
    add_arguments(add_verbosity_flags(parser))
    args = parser.parse_args(argv)
    setup_logging(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
