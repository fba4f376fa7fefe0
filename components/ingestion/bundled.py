"""Bundled datasets as tensorflow-datasets builders that read data shipped inside packages.

Each builder's `_split_generators` never downloads: it reads files from an installed package
(`names`, ...), splits them deterministically and yields raw records. `prepare(name)` builds
the TFDS dataset once into a cache folder and returns the splits as lists of dicts.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

SPLITS = ("train", "validation", "test")
DEFAULT_DATA_DIR = Path(os.environ.get("RNNPIPE_TFDS_DIR", Path.home() / ".cache" / "rnnpipe" / "tfds"))


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file shipped inside an installed package."""
    return Path(str(resources.files(package).joinpath(*parts)))


def hash_split(key: str, val: float = 0.1, test: float = 0.1) -> str:
    """A stable split for an i.i.d. record, decided by a hash of its key (leak-free, seedless)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0x100000000
    return "test" if bucket < test else "validation" if bucket < test + val else "train"


class Names(tfds.core.GeneratorBasedBuilder):
    """US census first names (the `names` package) with their gender, split by name."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "name": tfds.features.Text(),
                "gender": tfds.features.ClassLabel(names=["female", "male"]),
                "frequency": tfds.features.Scalar(dtype=np.float32),
            }),
            homepage="https://pypi.org/project/names/",
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        best: dict[str, tuple[float, str]] = {}
        for gender in ("female", "male"):
            for line in package_file("names", f"dist.{gender}.first").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    name, freq = parts[0].capitalize(), float(parts[1])
                    if name not in best or freq > best[name][0]:
                        best[name] = (freq, gender)  # a name in both lists takes its commoner gender
        records = sorted(best.items())
        return {
            split: self._generate_examples([r for r in records if hash_split(r[0]) == split])
            for split in SPLITS
        }

    def _generate_examples(self, records: list) -> Iterator[tuple[str, dict]]:
        for name, (freq, gender) in records:
            yield name, {"name": name, "gender": gender, "frequency": freq}


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {"names": Names}


def prepare(name: str, data_dir: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Build (once, cached) the bundled dataset `name`; returns its splits as records."""
    builder = BUILDERS[name](data_dir=str(data_dir or DEFAULT_DATA_DIR))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    info = builder.info.features
    out: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        ds = builder.as_dataset(split=split, shuffle_files=False)
        rows = []
        for ex in tfds.as_numpy(ds):
            row = {}
            for key, value in ex.items():
                feature = info[key]
                if isinstance(feature, tfds.features.ClassLabel):
                    row[key] = feature.int2str(int(value))
                elif isinstance(value, bytes):
                    row[key] = value.decode("utf-8")
                elif hasattr(value, "tolist"):
                    row[key] = value.tolist()
                else:
                    row[key] = value
            rows.append(row)
        out[split] = rows
    return out
