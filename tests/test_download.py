"""HAM10000 download against a local imitation of the Dataverse API (127.0.0.1 only, no internet)."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from core.data.download import (
    HAM10000_DOI,
    UNPACKED_MARKER,
    DermablateDownloadError,
    download,
    main,
    retry_policy,
    unpack_zip,
)
from core.data.isic2018 import HAM_FORMAT, find_ground_truth, locate_images, read_ground_truth
from core.data.metadata import read_metadata

pytestmark = pytest.mark.timeout(30)

METADATA_CSV = (
    b"lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\n"
    b"HAM_0000001,ISIC_0000001,nv,histo,40,male,back,vidir_modern\n"
    b"HAM_0000002,ISIC_0000002,mel,histo,55,female,face,rosendahl\n"
    b"HAM_0000003,ISIC_0000003,bkl,consensus,,unknown,trunk,vienna_dias\n"
)
METADATA_TAB = METADATA_CSV.replace(b",", b"\t")  # what an ingested table serves by default
TEST_GROUND_TRUTH_CSV = (
    b"lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\n"
    b"HAMTEST_0000001,ISIC_0034524,nv,follow_up,45,female,back,vidir_molemax\n"
    b"HAMTEST_0000002,ISIC_0034525,mel,histo,70,male,face,rosendahl\n"
)


def jpeg_bytes(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclass
class FakeFile:
    id: int
    filename: str
    body: bytes  # what /api/access/datafile/{id} serves
    original: bytes | None = None  # what ?format=original serves, for an ingested table
    original_name: str | None = None
    md5: str | None = None  # the record's checksum; by default the md5 of what is downloaded

    def record(self) -> dict:
        data = {"id": self.id, "filename": self.filename, "filesize": len(self.body), "contentType": "application/zip"}
        downloaded = self.body
        if self.original is not None:
            downloaded = self.original
            data.update(
                contentType="text/tab-separated-values", originalFileFormat="text/csv",
                originalFileName=self.original_name, originalFileSize=len(self.original),
            )
        md5 = self.md5 or hashlib.md5(downloaded).hexdigest()
        # Dataverse records the checksum of an ingested table's saved original.
        data.update(md5=md5, checksum={"type": "MD5", "value": md5})
        return {"label": self.filename, "dataFile": data}


class FakeDataverse:
    """Serves a dataset record and its files; records every request; can ignore Range, lose files,
    fail file requests with a status, or break a file off mid-way."""

    def __init__(self, files: list[FakeFile]):
        self.files = {f.id: f for f in files}
        self.requests: list[dict] = []
        self.honor_range = True
        self.missing: set[int] = set()  # file ids that answer 404
        self.failures: list[int] = []  # statuses the next file requests answer with, one each
        self.breaks: list[int] = []  # the next file requests send this many bytes of the body, then hang up
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def file_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith("/api/access/datafile/")]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                server.requests.append({"path": url.path, "query": query, "range": self.headers.get("Range")})
                if url.path == "/api/datasets/:persistentId/" and query.get("persistentId") == [HAM10000_DOI]:
                    files = [f.record() for f in server.files.values()]
                    record = {"status": "OK", "data": {"latestVersion": {"files": files}}}
                    return self._send(200, json.dumps(record).encode())
                prefix = "/api/access/datafile/"
                file = server.files.get(int(url.path[len(prefix):])) if url.path.startswith(prefix) else None
                if file is None or file.id in server.missing:
                    return self._send(404, b'{"status":"ERROR","message":"not found"}')
                if server.failures:
                    return self._send(server.failures.pop(0), b'{"status":"ERROR","message":"try later"}')
                body = file.original if query.get("format") == ["original"] and file.original else file.body
                cut = server.breaks.pop(0) if server.breaks else None
                start = self._range_start()
                if start is not None and server.honor_range:
                    headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
                    return self._send(206, body[start:], headers, cut)
                return self._send(200, body, cut=cut)

            def _range_start(self) -> int | None:
                value = self.headers.get("Range", "")
                return int(value[len("bytes="):].rstrip("-")) if value.startswith("bytes=") else None

            def _send(self, status: int, body: bytes, headers: dict | None = None, cut: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # hang up mid-body
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


PART_1 = {"ISIC_0000001.jpg": jpeg_bytes("red"), "ISIC_0000002.jpg": jpeg_bytes("blue")}
PART_2 = {"ISIC_0000003.jpg": jpeg_bytes("green")}
# The ISIC 2018 Task 3 test images sit in a folder inside their zip.
TEST_IMAGES = {"ISIC2018_Task3_Test_Images/ISIC_0034524.jpg": jpeg_bytes("white"),
               "ISIC2018_Task3_Test_Images/ISIC_0034525.jpg": jpeg_bytes("black")}


def dataverse_files() -> list[FakeFile]:
    return [
        FakeFile(11, "HAM10000_images_part_1.zip", zip_bytes(PART_1)),
        FakeFile(12, "HAM10000_images_part_2.zip", zip_bytes(PART_2)),
        FakeFile(13, "HAM10000_metadata.tab", METADATA_TAB, METADATA_CSV, "HAM10000_metadata.csv"),
        FakeFile(14, "ISIC2018_Task3_Test_Images.zip", zip_bytes(TEST_IMAGES)),
        FakeFile(15, "ISIC2018_Task3_Test_GroundTruth.tab", TEST_GROUND_TRUTH_CSV.replace(b",", b"\t"),
                 TEST_GROUND_TRUTH_CSV, "ISIC2018_Task3_Test_GroundTruth.csv"),
        FakeFile(16, "HAM10000_segmentations_lesion_tschandl.zip", zip_bytes({"ISIC_0000001_segmentation.png": b"x"})),
    ]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """A proxy set in the environment must not intercept requests to 127.0.0.1."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def dataverse():
    server = FakeDataverse(dataverse_files())
    yield server
    server.close()


def test_full_download_verifies_and_unpacks(dataverse, tmp_path):
    paths = download(tmp_path, dataverse.url)

    assert [p.name for p in paths] == [
        "HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip", "HAM10000_metadata.csv",
        "ISIC2018_Task3_Test_Images.zip", "ISIC2018_Task3_Test_GroundTruth.csv",
    ]
    assert (tmp_path / "HAM10000_metadata.csv").read_bytes() == METADATA_CSV
    assert len(read_metadata(tmp_path / "HAM10000_metadata.csv")) == 3
    for folder, members in (("HAM10000_images_part_1", PART_1), ("HAM10000_images_part_2", PART_2)):
        for name, data in members.items():
            assert (tmp_path / folder / name).read_bytes() == data
        assert (tmp_path / folder / UNPACKED_MARKER).is_file()
    assert not list(tmp_path.glob("*.part"))
    assert not (tmp_path / "HAM10000_segmentations_lesion_tschandl.zip").exists()  # not a default file
    metadata_request = next(r for r in dataverse.file_requests() if r["path"].endswith("/13"))
    assert metadata_request["query"] == {"format": ["original"]}


def test_full_download_includes_the_isic2018_test_set(dataverse, tmp_path):
    download(tmp_path, dataverse.url)

    assert (tmp_path / "ISIC2018_Task3_Test_GroundTruth.csv").read_bytes() == TEST_GROUND_TRUTH_CSV
    ground_truth_request = next(r for r in dataverse.file_requests() if r["path"].endswith("/15"))
    assert ground_truth_request["query"] == {"format": ["original"]}  # the CSV upload, not the ingested .tab
    unpacked = tmp_path / "ISIC2018_Task3_Test_Images"
    assert (unpacked / UNPACKED_MARKER).is_file()
    for member, data in TEST_IMAGES.items():
        assert (unpacked / member).read_bytes() == data
    # What `python -m core.evaluate --external` reads: the ground truth and every image it names.
    truth = read_ground_truth(find_ground_truth(tmp_path))
    refs = locate_images(truth, tmp_path)
    assert truth.format == HAM_FORMAT and list(truth.frame["image_id"]) == ["ISIC_0034524", "ISIC_0034525"]
    assert [ref.path.read_bytes() for ref in refs] == list(TEST_IMAGES.values())


@pytest.mark.parametrize("honor_range", [True, False], ids=["range", "server-ignores-range"])
def test_resume_from_part_file(dataverse, tmp_path, honor_range):
    dataverse.honor_range = honor_range
    full = dataverse.files[11].body
    half = len(full) // 2
    (tmp_path / "HAM10000_images_part_1.zip.part").write_bytes(full[:half])

    download(tmp_path, dataverse.url, ["HAM10000_images_part_1.zip"])

    assert [r["range"] for r in dataverse.file_requests()] == [f"bytes={half}-"]
    assert (tmp_path / "HAM10000_images_part_1.zip").read_bytes() == full
    assert not (tmp_path / "HAM10000_images_part_1.zip.part").exists()


def test_checksum_mismatch_removes_the_download(dataverse, tmp_path):
    dataverse.files[12].md5 = "0" * 32

    with pytest.raises(DermablateDownloadError, match="HAM10000_images_part_2.zip.*checksum mismatch.*removed"):
        download(tmp_path, dataverse.url, ["HAM10000_images_part_2.zip"])

    assert not (tmp_path / "HAM10000_images_part_2.zip").exists()
    assert not (tmp_path / "HAM10000_images_part_2.zip.part").exists()
    assert not (tmp_path / "HAM10000_images_part_2").exists()


def test_unreachable_server_fails_fast_with_advice(tmp_path):
    with socket.socket() as s:  # a port that was just free: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()

    advice = r"cannot reach http://127\.0\.0\.1:\d+: .*by hand from https://doi\.org/10\.7910/DVN/DBW86T"
    with pytest.raises(DermablateDownloadError, match=advice):
        download(tmp_path, f"http://127.0.0.1:{port}")

    assert time.monotonic() - started < 5


def test_verified_files_are_not_downloaded_again(dataverse, tmp_path):
    download(tmp_path, dataverse.url)
    dataverse.requests.clear()

    download(tmp_path, dataverse.url)

    assert dataverse.file_requests() == []
    assert len(dataverse.requests) == 1  # the listing


def test_corrupt_file_on_disk_is_replaced(dataverse, tmp_path):
    (tmp_path / "HAM10000_metadata.csv").write_bytes(b"not the metadata")
    download(tmp_path, dataverse.url, ["HAM10000_metadata"])
    assert (tmp_path / "HAM10000_metadata.csv").read_bytes() == METADATA_CSV


def test_http_error_names_file_and_status(dataverse, tmp_path):
    dataverse.missing.add(12)  # listed in the record, 404 on access

    with pytest.raises(DermablateDownloadError, match="downloading HAM10000_images_part_2.zip failed: HTTP 404"):
        download(tmp_path, dataverse.url)


def test_zip_slip_member_is_refused(tmp_path):
    for member in ("../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"):
        archive = tmp_path / "bad.zip"
        archive.write_bytes(zip_bytes({"fine.jpg": b"x", member: b"evil"}))

        with pytest.raises(DermablateDownloadError, match="outside"):
            unpack_zip(archive)

        assert not (tmp_path / "evil.txt").exists()
        assert not (tmp_path / "bad" / "fine.jpg").exists()


def test_cli_list_and_error_exit(dataverse, tmp_path, capsys):
    assert main(["--list", "--server", dataverse.url]) == 0
    listing = capsys.readouterr().out
    assert "HAM10000_segmentations_lesion_tschandl.zip" in listing
    assert "ISIC2018_Task3_Test_GroundTruth.tab" in listing
    assert "downloads as ISIC2018_Task3_Test_GroundTruth.csv" in listing
    assert "HAM10000_metadata.tab" in listing and "downloads as HAM10000_metadata.csv" in listing

    assert main(["--dest", str(tmp_path), "--server", dataverse.url, "--files", "nope.zip"]) == 1
    assert "no file nope.zip" in capsys.readouterr().err


FAST = retry_policy(backoff=0.01, attempts=3)  # the default waits seconds between tries


@pytest.fixture
def small_chunks(monkeypatch):
    """Read 16 bytes at a time, so that a break after a multiple of 16 bytes keeps them all
    (a chunk cut short is lost: the 1 MiB default would lose these small files whole)."""
    monkeypatch.setattr("core.data.download.CHUNK", 16)


def test_server_errors_are_retried(dataverse, tmp_path):
    dataverse.failures = [503, 503]

    download(tmp_path, dataverse.url, ["HAM10000_images_part_1.zip"], retry=FAST)

    assert len(dataverse.file_requests()) == 3
    assert (tmp_path / "HAM10000_images_part_1.zip").read_bytes() == dataverse.files[11].body


def test_a_connection_broken_mid_file_resumes_from_the_part_file(dataverse, tmp_path, capsys, small_chunks):
    full = dataverse.files[11].body
    half = len(full) // 32 * 16
    dataverse.breaks = [half]

    download(tmp_path, dataverse.url, ["HAM10000_images_part_1.zip"], retry=FAST)

    assert [r["range"] for r in dataverse.file_requests()] == [None, f"bytes={half}-"]
    assert (tmp_path / "HAM10000_images_part_1.zip").read_bytes() == full
    assert f"broke off after {half:,} bytes; resuming" in capsys.readouterr().err


def test_exhausted_status_retries_name_the_file_the_status_and_how_to_resume(dataverse, tmp_path):
    part = tmp_path / "HAM10000_images_part_1.zip.part"
    part.write_bytes(dataverse.files[11].body[:10])
    dataverse.failures = [503] * 4

    resume = (rf"HAM10000_images_part_1\.zip failed: HTTP 503 .*after 3 retries.*"
              rf"run the command again later to resume it from {part}")
    with pytest.raises(DermablateDownloadError, match=resume):
        download(tmp_path, dataverse.url, ["HAM10000_images_part_1.zip"], retry=FAST)

    assert len(dataverse.file_requests()) == 4
    assert part.read_bytes() == dataverse.files[11].body[:10]  # kept, to resume from


def test_exhausted_resumptions_keep_the_part_file_for_the_next_run(dataverse, tmp_path, small_chunks):
    full = dataverse.files[11].body
    dataverse.breaks = [160] * 4
    part = tmp_path / "HAM10000_images_part_1.zip.part"

    with pytest.raises(DermablateDownloadError, match=rf"HAM10000_images_part_1\.zip broke off .* 4 times in a row; "
                                                      rf"run the command again later to resume it from {part}"):
        download(tmp_path, dataverse.url, ["HAM10000_images_part_1.zip"], retry=FAST)
    assert part.read_bytes() == full[:640]

    download(tmp_path, dataverse.url, ["HAM10000_images_part_1.zip"], retry=FAST)
    assert dataverse.file_requests()[-1]["range"] == "bytes=640-"
    assert (tmp_path / "HAM10000_images_part_1.zip").read_bytes() == full
