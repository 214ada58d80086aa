"""The sweep folder on a local disk, a shared mount, or cloud storage (s3://, gs://, ...).

Ray persists checkpoints and Tune state to the same `storage_path`; the results
contract files go there too, through pyarrow's filesystems, as Ray's own storage layer
does. Every file lands under a temporary name first and is then moved into place, so
a reader never sees half a file (on a local disk the move is an atomic rename).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs

from core import io


def location(results: str) -> str:
    """An absolute path or a URI: what Ray's `storage_path` and this module accept."""
    return results if "://" in results else os.path.abspath(results)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _resolve(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    return pyarrow.fs.FileSystem.from_uri(uri)


def exists(uri: str) -> bool:
    fs, path = _resolve(uri)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def read_text(uri: str) -> str:
    fs, path = _resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def read_json(uri: str) -> Any:
    return json.loads(read_text(uri))


def read_csv(uri: str) -> pd.DataFrame:
    return pd.read_csv(StringIO(read_text(uri)))


def put_file(src: str | Path, uri: str) -> None:
    """Copy a local file to `uri` under a temporary name, then move it into place. On a local
    disk through core.io: a full disk raises DiskFull naming `uri`, and leaves the old file whole."""
    fs, path = _resolve(uri)
    parent, name = path.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        io.atomic_write(path, lambda tmp: shutil.copyfile(src, tmp))
        return
    tmp = f"{parent}/{io.temp_name(name)}"
    try:
        pyarrow.fs.copy_files(str(src), tmp, destination_filesystem=fs)
        fs.move(tmp, path)
    except BaseException:
        with suppress(OSError):
            fs.delete_file(tmp)
        raise


def write_text(uri: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "file"
        local.write_text(text)
        put_file(local, uri)


def write_json(uri: str, data: Any) -> None:
    write_text(uri, json.dumps(data, indent=2) + "\n")


def put_dir(src: str | Path, uri: str) -> None:
    """Copy the files of a flat local folder (a run folder) into `uri`."""
    for file in sorted(Path(src).iterdir()):
        if file.is_file():
            put_file(file, join(uri, file.name))


@contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path to read the file `uri` from: itself on a local disk, else a temporary download."""
    fs, path = _resolve(uri)
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = str(Path(tmp, path.rsplit("/", 1)[-1]))
        pyarrow.fs.copy_files(path, local, source_filesystem=fs)
        yield local


def remove(uri: str) -> None:
    """Delete the file `uri`, if there is one."""
    fs, path = _resolve(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.File:
        fs.delete_file(path)


def list_dirs(uri: str) -> list[str]:
    """Names of the sub-folders of `uri` (none if it does not exist)."""
    fs, path = _resolve(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path))
    return sorted(i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory)


def copy_tree(src: str, dest: str, last: str | None = None) -> None:
    """Copy every file under `src` to the same place under `dest`, each through put_file; the files
    named `last` after all the others, the one at the top of `src` very last."""
    fs, src_path = _resolve(src)
    found = fs.get_file_info(pyarrow.fs.FileSelector(src_path, recursive=True))
    relative = [i.path[len(src_path):].lstrip("/") for i in found if i.type == pyarrow.fs.FileType.File]
    for name in sorted(relative, key=lambda r: (r.rsplit("/", 1)[-1] == last, -r.count("/"), r)):
        with local_copy(join(src, name)) as local:
            put_file(local, join(dest, name))


def move_dir(src: str, dest: str) -> None:
    """Move each file of the flat folder `src` into `dest`, then remove `src`."""
    fs, src_path = _resolve(src)
    dest_path = _resolve(dest)[1]
    fs.create_dir(dest_path, recursive=True)
    for info in fs.get_file_info(pyarrow.fs.FileSelector(src_path)):
        if info.type == pyarrow.fs.FileType.File:
            fs.move(info.path, f"{dest_path}/{info.base_name}")
    fs.delete_dir(src_path)
