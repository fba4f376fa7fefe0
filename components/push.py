"""Push stage (TFX Pusher): publish the validated SavedModel where servers look for it.

inputs -> outputs: export, infra_validate, evaluate -> `exports/<name>/<version>/`
(saved_model.pb + variables/ + model_card.md + `rnnpipe.json`), and in the properties the
published path and version, plus what the registry needs (`register`: content hash, metrics,
gate metric, data digest, the evaluation's per-example samples).

Publication is atomic and idempotent:
- only an export that infra validation validated (same content hash) is published;
- the SavedModel is copied to `<base>/.tmp-<pid>-<rand>` and renamed to the next version under
  the base's lock, so a server never sees a half-written version, whatever is killed when;
- a version already holding this content (`rnnpipe.json`) is reused, never published twice;
- numbers are never reused: the next version is above every numeric folder and above the
  highest number ever allocated here (`.rnnpipe-last-version`); entries that are not plain
  ASCII numbers (`.invalid-3-...`, `²`, `12.bak`) are ignored;
- stale `.tmp-*` folders of dead processes are removed.
The output records the published folder's digest, so a cached push whose folder vanished or
changed is run again (republished).

Then `register` (the stage's `after` step, run on every pipeline run, whether the push was
built or cached) registers the published export in this run's model registry (`ctx.register`,
pipeline/registry.py: idempotent by content hash under the store's lock, tags, the champion
decision); without tracking there is no registry and nothing is registered.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from components import faults
from components import stage_files as files
from components.artifacts import file_lock, fsync_dir, remove_orphans, write_text
from components.config import ExportConfig

PUBLISHED_FILE = "rnnpipe.json"  # in each published version: which model it holds
HIGH_WATER = ".rnnpipe-last-version"


class PushError(RuntimeError):
    """The export cannot be published (not validated, or the export base is unusable)."""


def next_version(base: Path) -> int:
    """One above every numeric version folder and above the highest number ever allocated."""
    numbers = [n for n in (files.version_number(p.name) for p in base.iterdir() if p.is_dir()) if n is not None] \
        if base.is_dir() else []
    mark = base / HIGH_WATER
    text = mark.read_text().strip() if mark.is_file() else ""
    high = int(text) if text.isascii() and text.isdigit() else 0
    return max([high, *numbers], default=0) + 1


def find_published(base: Path, content_hash: str) -> tuple[int, Path] | None:
    """The version already holding this content, if its files are intact."""
    from components.artifacts import dir_digest

    if not base.is_dir():
        return None
    for path in sorted(base.iterdir(), key=lambda p: files.version_number(p.name) or 0):
        number = files.version_number(path.name)
        record = path / PUBLISHED_FILE
        if number is None or not record.is_file():
            continue
        try:
            if json.loads(record.read_text()).get("content_hash") != content_hash:
                continue
        except (OSError, ValueError, AttributeError):
            continue
        if dir_digest(path, (PUBLISHED_FILE,)) == content_hash:
            return number, path
    return None


def clean_stale(base: Path) -> list[str]:
    """Remove `.tmp-<pid>-*` folders whose process is gone, and `.tmp-*` ones with no pid; returns their names."""
    return remove_orphans(base, ".tmp-", unreadable=True)


def publish(source: Path, base: Path, content_hash: str, record: dict[str, Any]) -> tuple[int, Path, bool]:
    """Publish `source` as the next version of `base` (or find it published); (version, path, new)."""
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PushError(f"cannot create the export base {base}: {exc.strerror or exc}") from None
    if not base.is_dir():
        raise PushError(f"the export base {base} is not a folder")
    with file_lock(base / ".lock"):
        clean_stale(base)
        found = find_published(base, content_hash)
        if found:
            return (*found, False)
    from components.artifacts import dir_digest

    tmp = base / f".tmp-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        shutil.copytree(source, tmp)
        if dir_digest(tmp) != content_hash:  # the copy is what was validated, or nothing is published
            raise PushError(f"the copy of {source} does not match the validated export {content_hash[:12]} "
                            f"(changed on disk since it was exported?): nothing published")
        with file_lock(base / ".lock"):
            found = find_published(base, content_hash)  # a concurrent run of the same model won
            if found:
                return (*found, False)
            faults.point("push:copied")
            version = next_version(base)
            (tmp / PUBLISHED_FILE).write_text(json.dumps({**record, "version": version,
                                                          "content_hash": content_hash}, indent=2))
            final = base / str(version)
            os.rename(tmp, final)
            write_text(base / HIGH_WATER, str(version))  # atomic: a torn mark could reuse a number
            fsync_dir(base)
            faults.point("push:renamed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version, final, True


def run(inputs: dict, workdir: Path, ctx: Any, *, export: ExportConfig, name: str) -> dict[str, Any]:
    """Publish the validated export; record what the registry needs to register it (`register`)."""
    exported, validated, evaluated = inputs["export"], inputs["infra_validate"], inputs["evaluate"]
    content = exported.properties["content_hash"]
    if validated.properties.get("content_hash") != content:
        raise PushError(f"infra validation checked SavedModel {validated.properties.get('content_hash')}, "
                        f"not the export {content}: nothing published")
    if not validated.properties.get("validated"):
        ctx.log("publishing without infra validation (export.infra_validate=false)")
    evaluation = evaluated.properties
    record = {"pipeline": name, "export_fingerprint": exported.fingerprint,
              "validated": bool(validated.properties.get("validated"))}
    base = Path(export.dir) / name
    version, path, new = publish(files.saved_model(exported), base, content, record)
    ctx.log(f"{'published' if new else 'already published'} as version {version}: {path}")
    samples = files.samples_file(evaluated)
    return {
        "path": str(path.resolve()),
        "base_path": str(base.resolve()),
        "version": version,
        "content_hash": content,
        "signatures": exported.properties.get("signatures", ["serving_default"]),
        "input_kind": exported.properties.get("input_kind"),
        "published": {"path": str(path.resolve()), "digest": content, "skip": [PUBLISHED_FILE]},
        "register": {
            "enabled": export.register,
            "blessed": bool(evaluation.get("blessed")),
            "content_hash": content,
            "path": str(path.resolve()),
            "version": version,
            "canary": str(validated.path(files.CANARY).resolve()),
            "input_kind": exported.properties.get("input_kind"),
            "main_metric": evaluation.get("main_metric"),
            "gate_metrics": evaluation.get("gate_metrics", []),
            "metrics": evaluation.get("metrics", {}),
            "data_digest": evaluation.get("data_digest"),
            "samples": str(samples.resolve()) if samples else None,
        },
        "tags": {"export_version": str(version), "exported": "true"},
        "summary": str(path),
    }


def register(pushed: Any, ctx: Any) -> str | None:
    """Register the published export in this run's model registry; a line for the user, if any.

    Runs on every pipeline run (a cached push too: each run records its registry version).
    """
    if ctx.register is None:  # tracking disabled: no registry
        return None
    done = ctx.register(pushed.properties["register"])
    if not done:  # registration off, or published unblessed (export.require_blessing: false)
        return None
    return (f"registry: {done['name']} version {done['version']}, "
            f"{'champion' if done['champion'] else 'not champion'} ({done['reason']})")
