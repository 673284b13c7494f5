"""Find, verify and load the course's data sets.

One resolver for every data set, in this order:

1. an explicit ``root`` argument, then the ``COURSE_DATA`` environment variable
   (a directory, or several separated by ``os.pathsep``);
2. the course cache (``$COURSE_CACHE/data``, default ``~/.cache/pytorch-course/data``);
3. torchvision's own download into the cache.

In each directory it accepts the extracted folder torchvision reads, or one of
the data set's archives (e.g. the official ``cifar-10-python.tar.gz`` or the
offline ``.tar.xz`` copy), which is extracted into the cache once and verified
against the MD5s torchvision lists. When nothing works, :class:`DataNotFoundError`
names every place it looked and how to fix it.

While ``course grade`` grades an assignment it may *withhold* files from the
student's kernel (``COURSE_WITHHELD``, e.g. ``cifar10:test_batch``: the test split
that the grader's judge scores a model on); loading them then raises
:class:`DataWithheldError`, and the rest of the data set loads as usual.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

if TYPE_CHECKING:  # torchvision is imported where a data set is loaded: finding one needs no torch
    from torchvision import datasets

__all__ = [
    "CIFAR10",
    "DATASETS",
    "HYMENOPTERA",
    "CorruptDataError",
    "DataNotFoundError",
    "DataWithheldError",
    "DatasetSpec",
    "cache_dir",
    "cifar10",
    "data_roots",
    "describe",
    "hymenoptera",
    "resolve",
    "withheld",
]

DATA_ENV = "COURSE_DATA"
CACHE_ENV = "COURSE_CACHE"
WITHHELD_ENV = "COURSE_WITHHELD"


class DataNotFoundError(FileNotFoundError):
    """No usable copy of a data set was found; the message lists where we looked."""


class DataWithheldError(DataNotFoundError):
    """A file the grader keeps from the student's kernel while it grades (see :func:`withheld`)."""


class CorruptDataError(RuntimeError):
    """A data file or archive does not match its checksum or cannot be read."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set looks like on disk, declared as data.

    ``folder`` is the directory torchvision reads below a root; ``files`` maps
    paths inside it to MD5s (empty: only ``required_dirs`` are checked);
    ``archives`` are file names accepted in a data root and extracted once.
    """

    name: str
    folder: str
    archives: tuple[str, ...]
    download_hint: str
    files: dict[str, str] = field(default_factory=dict)
    required_dirs: tuple[str, ...] = ()
    download: Callable[[Path], None] | None = None


def _md5(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def _download_cifar10(root: Path) -> None:
    from torchvision import datasets

    datasets.CIFAR10(root=str(root), train=True, download=True)


def _download_hymenoptera(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(
        "https://download.pytorch.org/tutorial/hymenoptera_data.zip", download_root=str(root)
    )


CIFAR10 = DatasetSpec(
    name="CIFAR-10",
    folder="cifar-10-batches-py",
    archives=("cifar-10-python.tar.gz", "cifar-10-python.tar.xz"),
    files={
        # The MD5s torchvision.datasets.CIFAR10 checks.
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    download_hint="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (163 MB)",
    download=_download_cifar10,
)

HYMENOPTERA = DatasetSpec(
    name="ants/bees (hymenoptera)",
    folder="hymenoptera_data",
    archives=("hymenoptera_data.zip",),
    required_dirs=("train/ants", "train/bees", "val/ants", "val/bees"),
    download_hint="https://download.pytorch.org/tutorial/hymenoptera_data.zip (47 MB)",
    download=_download_hymenoptera,
)

DATASETS: dict[str, DatasetSpec] = {"cifar10": CIFAR10, "hymenoptera": HYMENOPTERA}


def withheld(spec: DatasetSpec | str) -> frozenset[str]:
    """The files of ``spec`` that this process may not read: ``$COURSE_WITHHELD``'s entries for it.

    ``COURSE_WITHHELD`` is a comma-separated list of ``dataset:file`` (``cifar10:test_batch``),
    set by ``course grade`` in a student's kernel for the assignments its config names.
    """
    key = spec if isinstance(spec, str) else next((k for k, v in DATASETS.items() if v is spec), "")
    entries = (e.strip() for e in os.environ.get(WITHHELD_ENV, "").split(","))
    return frozenset(e.split(":", 1)[1] for e in entries if e.startswith(f"{key}:"))


def cache_dir() -> Path:
    """The course cache: ``$COURSE_CACHE`` or ``~/.cache/pytorch-course``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pytorch-course")


def data_roots(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched, in order: ``root``, ``$COURSE_DATA``, the cache."""
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root))
    for part in os.environ.get(DATA_ENV, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()))
    roots.append(cache_dir() / "data")
    return roots


def _problems(spec: DatasetSpec, folder: Path, check_md5: bool) -> list[str]:
    """Everything wrong with an extracted folder (empty list: it is usable)."""
    problems = []
    held = withheld(spec)
    for name, md5 in spec.files.items():
        if name in held:
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif check_md5 and (found := _md5(path)) != md5:
            problems.append(f"{path} has MD5 {found}, expected {md5}")
    for sub in spec.required_dirs:
        if not (folder / sub).is_dir():
            problems.append(f"{folder / sub} is missing")
    return problems


def _extract(archive: Path, into: Path) -> None:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    else:
        with tarfile.open(archive) as tf:  # reads .tar.gz and .tar.xz alike
            tf.extractall(into, filter="data")


def _extract_verified(spec: DatasetSpec, archive: Path, cache: Path) -> Path:
    """Extract ``archive`` into ``cache`` atomically; verify before publishing it."""
    target = cache / spec.folder
    if target.is_dir() and not _problems(spec, target, check_md5=False):
        return cache  # extracted before: no lock, so a read-only cache (a locked kernel) works
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f".{spec.folder}.lock")):
        if target.is_dir() and not _problems(spec, target, check_md5=False):
            return cache  # another process finished the job while we waited
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=cache))
        try:
            try:
                _extract(archive, staging)
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
                raise CorruptDataError(
                    f"{spec.name}: the archive {archive} cannot be read ({err}). It is probably "
                    f"truncated or corrupted: delete it and fetch it again from {spec.download_hint} "
                    "(or run `course fetch`)."
                ) from None
            problems = _problems(spec, staging / spec.folder, check_md5=True)
            if problems:
                raise CorruptDataError(
                    f"{spec.name}: the archive {archive} extracted, but its contents fail "
                    "verification:\n  - " + "\n  - ".join(problems) + "\nDelete the archive and "
                    f"fetch it again from {spec.download_hint} (or run `course fetch`)."
                )
            if target.exists():
                shutil.rmtree(target)
            (staging / spec.folder).rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cache


def resolve(
    spec: DatasetSpec | str, root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Path:
    """Return a root directory that holds ``spec.folder`` ready for torchvision.

    Raises :class:`DataNotFoundError` naming every place looked at when no copy
    is found and the download (if allowed) fails, and :class:`CorruptDataError`
    when the only copy found is damaged.
    """
    spec = DATASETS[spec] if isinstance(spec, str) else spec
    cache = cache_dir() / "data"
    looked: list[str] = []
    for candidate in data_roots(root):
        folder = candidate / spec.folder
        if folder.is_dir():
            problems = _problems(spec, folder, check_md5=False)
            if not problems:
                return candidate
            looked.append(f"{folder}: incomplete ({'; '.join(problems[:3])})")
        else:
            looked.append(f"{folder}: not there")
        for archive_name in spec.archives:
            archive = candidate / archive_name
            if archive.is_file():
                return _extract_verified(spec, archive, cache)
            looked.append(f"{archive}: not there")
    if download and spec.download is not None:
        try:
            spec.download(cache)
            if not _problems(spec, cache / spec.folder, check_md5=False):
                return cache
            looked.append(f"download into {cache}: finished but the files are incomplete")
        except Exception as err:  # noqa: BLE001 - any network failure ends in the same advice
            looked.append(f"download from {spec.download_hint}: failed ({type(err).__name__}: {err})")
    elif not download:
        looked.append("download: not attempted (download=False)")
    raise DataNotFoundError(
        f"Could not find the {spec.name} data set. Looked in:\n  - "
        + "\n  - ".join(dict.fromkeys(looked))
        + f"\nTo fix it, either:\n  - set {DATA_ENV} to a directory holding `{spec.folder}/` or one of "
        f"{', '.join(spec.archives)}, or\n  - run `course fetch` on a machine with internet "
        f"access (it downloads {spec.download_hint} into {cache})."
    )


def describe(spec: DatasetSpec | str) -> str:
    """Where ``spec`` resolves right now, without downloading (for ``course doctor``)."""
    spec = DATASETS[spec] if isinstance(spec, str) else spec
    for candidate in data_roots():
        if (candidate / spec.folder).is_dir() and not _problems(spec, candidate / spec.folder, False):
            return f"{candidate / spec.folder}"
        for archive_name in spec.archives:
            if (candidate / archive_name).is_file():
                return f"{candidate / archive_name} (archive, extracted on first use)"
    return f"not found (looked in {', '.join(str(r) for r in data_roots())}); run `course fetch`"


def cifar10(
    train: bool = True,
    transform: Callable | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> datasets.CIFAR10:
    """``torchvision.datasets.CIFAR10`` read through :func:`resolve`."""
    from torchvision import datasets

    held = withheld(CIFAR10)
    if not train and "test_batch" in held:
        raise DataWithheldError(
            "The CIFAR-10 test set is held by the grader while it grades this notebook: the grader "
            "measures your model on it itself, outside your kernel. On your own machine it loads as usual."
        )
    data_root = resolve(CIFAR10, root, download=download and not held)
    dataset_class = _cifar10_without(held) if held else datasets.CIFAR10
    try:
        return dataset_class(root=str(data_root), train=train, transform=transform, download=False)
    except RuntimeError as err:  # torchvision's own MD5 check failed
        problems = _problems(CIFAR10, data_root / CIFAR10.folder, check_md5=True)
        raise CorruptDataError(
            f"CIFAR-10 in {data_root / CIFAR10.folder} is corrupted ({err}):\n  - "
            + "\n  - ".join(problems)
            + "\nDelete that folder and run again (or `course fetch`)."
        ) from None


def _cifar10_without(held: frozenset[str]) -> type[datasets.CIFAR10]:
    """torchvision's CIFAR10 whose integrity check skips the ``held`` files (they are not there)."""
    from torchvision import datasets
    from torchvision.datasets.utils import check_integrity

    class CIFAR10Without(datasets.CIFAR10):
        def _check_integrity(self) -> bool:
            return all(
                check_integrity(os.path.join(self.root, self.base_folder, name), md5)
                for name, md5 in self.train_list + self.test_list
                if name not in held
            )

    return CIFAR10Without


def hymenoptera(
    split: str = "train",
    transform: Callable | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> datasets.ImageFolder:
    """The ants/bees set as ``torchvision.datasets.ImageFolder`` (``split``: train or val)."""
    from torchvision import datasets

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    data_root = resolve(HYMENOPTERA, root, download=download)
    return datasets.ImageFolder(str(data_root / HYMENOPTERA.folder / split), transform=transform)
