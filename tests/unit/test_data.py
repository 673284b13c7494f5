"""Data resolution: explicit root / COURSE_DATA, cache, archives, clear errors.

The fixtures build a *fake, tiny* CIFAR-like layout (``fake_spec``) so these tests
run in milliseconds and never need the real 160 MB archive; one test reads the
real offline copy when ``COURSE_DATA`` provides it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from course_utils import data


def _md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


# Captured before the autouse fixture isolates each test from them.
REAL_DATA = os.environ.get("COURSE_DATA")
REAL_CACHE = os.environ.get("COURSE_CACHE")

FILES = {"part_a": b"alpha" * 100, "part_b": b"beta" * 100}


@pytest.fixture
def fake_spec() -> data.DatasetSpec:
    """A two-file data set declared like CIFAR-10 (test fixture, not real data)."""
    return data.DatasetSpec(
        name="fake set",
        folder="fake-batches",
        archives=("fake.tar.gz", "fake.tar.xz"),
        files={name: _md5(payload) for name, payload in FILES.items()},
        download_hint="https://example.invalid/fake.tar.gz",
        download=None,
    )


def _write_archive(path: Path, files: dict[str, bytes], mode: str = "w:xz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"fake-batches/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_DATA", raising=False)


def test_missing_data_error_names_every_place_looked(tmp_path, fake_spec, monkeypatch):
    """Does a missing data set give one clear error listing where we looked and the fix?"""
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "shared"))
    with pytest.raises(data.DataNotFoundError) as err:
        data.resolve(fake_spec, tmp_path / "explicit")
    message = str(err.value)
    for place in (tmp_path / "explicit", tmp_path / "shared", tmp_path / "cache" / "data"):
        assert str(place / "fake-batches") in message
    assert "fake.tar.xz" in message and "COURSE_DATA" in message and "course fetch" in message


def test_archive_in_course_data_is_extracted_into_cache_and_verified(tmp_path, fake_spec, monkeypatch):
    """Is an .tar.xz found in COURSE_DATA extracted once into the cache?"""
    shared = tmp_path / "shared"
    shared.mkdir()
    _write_archive(shared / "fake.tar.xz", FILES)
    monkeypatch.setenv("COURSE_DATA", str(shared))
    root = data.resolve(fake_spec)
    assert root == tmp_path / "cache" / "data"
    assert (root / "fake-batches" / "part_a").read_bytes() == FILES["part_a"]
    assert not (shared / "fake-batches").exists(), "the shared folder must stay untouched"
    # Second call finds the extracted folder in the cache without re-extracting.
    (shared / "fake.tar.xz").unlink()
    assert data.resolve(fake_spec) == root


def test_official_tar_gz_is_accepted(tmp_path, fake_spec):
    """Does the gzip archive (the official format) work as well as xz?"""
    _write_archive(tmp_path / "fake.tar.gz", FILES, mode="w:gz")
    root = data.resolve(fake_spec, tmp_path)
    assert (root / "fake-batches" / "part_b").is_file()


def test_archive_with_wrong_checksum_is_rejected_and_leaves_nothing(tmp_path, fake_spec):
    """Does a tampered archive give a clear error naming the file and the MD5s?"""
    _write_archive(tmp_path / "fake.tar.xz", {**FILES, "part_b": b"tampered"})
    with pytest.raises(data.CorruptDataError) as err:
        data.resolve(fake_spec, tmp_path)
    message = str(err.value)
    assert "part_b" in message and fake_spec.files["part_b"] in message and "fetch it again" in message
    assert not (tmp_path / "cache" / "data" / "fake-batches").exists()


def test_truncated_archive_gives_clear_error(tmp_path, fake_spec):
    """Is a truncated download reported as such, not as a tarfile traceback?"""
    good = _write_archive(tmp_path / "good.tar.xz", FILES).read_bytes()
    (tmp_path / "fake.tar.xz").write_bytes(good[: len(good) // 2])
    with pytest.raises(data.CorruptDataError, match="truncated or corrupted"):
        data.resolve(fake_spec, tmp_path)


def test_explicit_root_wins_over_course_data(tmp_path, fake_spec, monkeypatch):
    """Is the explicit root searched before COURSE_DATA?"""
    for where in ("explicit", "shared"):
        folder = tmp_path / where / "fake-batches"
        folder.mkdir(parents=True)
        for name, payload in FILES.items():
            (folder / name).write_bytes(payload)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "shared"))
    assert data.resolve(fake_spec, tmp_path / "explicit") == tmp_path / "explicit"
    assert data.resolve(fake_spec) == tmp_path / "shared"


def test_download_failure_is_reported_without_network_traceback(tmp_path, fake_spec):
    """Does a failing download end in the same clear error, naming the failure?"""

    def offline(root: Path) -> None:
        raise OSError("network is unreachable")

    spec = data.DatasetSpec(**{**fake_spec.__dict__, "download": offline})
    with pytest.raises(data.DataNotFoundError, match="network is unreachable"):
        data.resolve(spec, tmp_path)


def test_cifar10_loader_reports_missing_data_clearly(tmp_path, monkeypatch):
    """Does data.cifar10 without any copy raise DataNotFoundError, not a torchvision error?"""
    with pytest.raises(data.DataNotFoundError, match="CIFAR-10"):
        data.cifar10(root=tmp_path, download=False)


@pytest.mark.skipif(not REAL_DATA, reason="needs the offline copy (COURSE_DATA)")
def test_real_cifar10_resolves_from_course_data(monkeypatch):
    """Does the offline CIFAR-10 archive load through torchvision with the official labels?"""
    monkeypatch.setenv("COURSE_DATA", REAL_DATA)
    if REAL_CACHE:  # reuse the extracted copy the notebooks use
        monkeypatch.setenv("COURSE_CACHE", REAL_CACHE)
    test_set = data.cifar10(train=False)
    assert len(test_set) == 10_000
    assert test_set.targets[:10] == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


@pytest.mark.skipif(not REAL_DATA, reason="needs the offline copy (COURSE_DATA)")
def test_withheld_test_set_is_refused_and_the_training_set_still_loads(tmp_path, monkeypatch):
    """In a kernel's data view without CIFAR-10's test_batch, does train load and test say why not?"""
    from course_utils.grader import dataview

    monkeypatch.setenv("COURSE_DATA", REAL_DATA)
    if REAL_CACHE:
        monkeypatch.setenv("COURSE_CACHE", REAL_CACHE)
    view = dataview.build(tmp_path / "view", ["cifar10:test_batch"])
    batches = tmp_path / "view" / "data" / "cifar-10-batches-py"
    assert sorted(p.name for p in batches.iterdir()) == sorted(set(data.CIFAR10.files) - {"test_batch"})
    assert not any("test_batch" in path for path in view.readonly)
    for key, value in view.env.items():
        monkeypatch.setenv(key, value)
    assert len(data.cifar10(train=True)) == 50_000
    with pytest.raises(data.DataWithheldError, match="held by the grader"):
        data.cifar10(train=False)


def test_withheld_entries_are_validated():
    """Does a typo in CourseGrade.withheld stop with a message naming the entry?"""
    from course_utils.grader import dataview

    assert dataview.validate(["cifar10:test_batch", "cifar10:test_batch"]) == ["cifar10:test_batch"]
    with pytest.raises(ValueError, match="unknown entries"):
        dataview.validate(["cifar:test_batch"])
    with pytest.raises(ValueError, match="has no file 'test'"):
        dataview.validate(["cifar10:test"])
