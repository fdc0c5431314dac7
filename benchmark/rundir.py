"""The run folder: its layout, the name of every file in it, and every read and write of those files.

A run folder (``emb run``'s ``hydra.run.dir``, one job of a sweep, or an ``emb score --out`` folder)::

    run_format.json           the folder's format version, written when the run starts
    records.jsonl             one SampleRecord per line, appended and fsynced as each sample finishes
    samples/METHOD/ID/        hard links into the sample cache: edited.png, mask.png, soft_mask.npz, record.json
    results.json              summary, config, dataset, directions, provenance, generation record, format_version
    samples.parquet           per-sample long rows (method, sample, metric, value): what every table is made of
    summary.csv .md .tex      the summary (all numbers) and its pivot (markdown, LaTeX)
    sample_fingerprints.json  each record's dataset content when the run was first scored
    report.md .csv            ``emb report``: the run beside a paper's numbers
    report.html, plots/       ``emb report``: the page (tables, plots embedded) and each plot as PNG and SVG
    score.log                 ``emb score``'s log
    job_error.txt             a multirun job's one-line error
    records.previous-N.jsonl, samples.previous-N/   an earlier run's records, set aside by a run into its folder
    scores.previous-N/        the tables a re-score with another metric set replaced
    .hydra/                   Hydra's own: config.yaml, hydra.yaml, overrides.yaml

A sweep root holds ``sweep.json`` and the merged ``summary.csv`` / ``summary.md`` (and, from ``emb report``,
``report.html`` and ``plots/``).

**Format version.** The layout above is format 1, the layout every earlier emb wrote: a folder without a version
is read as format 1. A run writes the version twice: into ``run_format.json`` when it starts, so that a run stopped
before its tables (records only) says which format its records are in, and into ``results.json``, so that the tables
of an ``emb score --out`` folder (which has no records and no marker) carry it too. A reader given a folder of
another version refuses it in one line (``RunFormatError``) instead of misreading it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from benchmark.types import EditOutput, SampleError, error_line

log = logging.getLogger("emb")

FORMAT_VERSION = 1
LEGACY_VERSION = 1  # what a folder without a version is: the layout has not changed since versions were written

FORMAT_FILE = "run_format.json"
RECORDS_FILE = "records.jsonl"
SAMPLES_DIR = "samples"
RESULTS_FILE = "results.json"
LONG_TABLE_FILE = "samples.parquet"
SUMMARY_CSV, SUMMARY_MD, SUMMARY_TEX = "summary.csv", "summary.md", "summary.tex"
FINGERPRINTS_FILE = "sample_fingerprints.json"
REPORT_MD, REPORT_CSV = "report.md", "report.csv"
REPORT_HTML, PLOTS_DIR = "report.html", "plots"
PLOT_SUFFIXES = (".png", ".svg")
SCORE_LOG_FILE = "score.log"
JOB_ERROR_FILE = "job_error.txt"
SWEEP_FILE = "sweep.json"
HYDRA_DIR = ".hydra"
# the files of one stored sample (in the sample cache and, hard-linked, in samples/METHOD/ID/)
EDITED_FILE, MASK_FILE, SOFT_MASK_FILE, RECORD_FILE = "edited.png", "mask.png", "soft_mask.npz", "record.json"
ARTIFACT_FILES = (EDITED_FILE, MASK_FILE, SOFT_MASK_FILE)
# what a re-score rewrites (and keeps a copy of in scores.previous-N/ when the metric set changes)
TABLE_FILES = (LONG_TABLE_FILE, SUMMARY_CSV, SUMMARY_MD, SUMMARY_TEX, RESULTS_FILE, REPORT_MD, REPORT_CSV)


class RunFormatError(ValueError):
    """A run folder of a format this emb does not read: one line naming the folder and both versions."""


# --- records ---------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class SampleRecord:
    """One finished sample of one method: a line of ``records.jsonl`` (and, without ``artifacts``, the sample
    cache's ``record.json``). Field names are the JSON keys; ``to_json``/``from_json`` are the only conversion."""

    method: str
    sample_id: str
    edit_type: str = "unknown"
    seed: int | None = None
    config_hash: str | None = None
    code_version: str | None = None
    key: str | None = None  # the sample cache key (absent when the sample failed before it was known)
    status: str  # "ok" or "failed"
    error: str | None = None  # a failure's one line
    time_s: float | None = None
    warmup: bool = False  # the method's first computed sample of the run: its time includes one-off costs
    nfe: int | None = None
    denoiser_calls: int | None = None
    grad_evals: int | None = None  # backward passes through the denoiser (batch rows); written only when > 0
    has_image: bool | None = None  # what the method returned (ok records only)
    has_mask: bool | None = None
    extras: dict[str, Any] | None = None
    artifacts: str | None = None  # the sample's folder, relative to the run folder (records.jsonl only)

    REQUIRED: ClassVar[tuple[str, ...]] = ("method", "sample_id", "status")
    # written only when set: a failed sample has no cache key (sometimes), outputs or artifacts
    OPTIONAL: ClassVar[tuple[str, ...]] = ("key", "has_image", "has_mask", "extras", "artifacts", "grad_evals")
    NUMBERS: ClassVar[tuple[str, ...]] = ("time_s", "nfe", "denoiser_calls", "grad_evals", "seed")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: v for k, v in data.items() if not (k in self.OPTIONAL and v is None)}

    @classmethod
    def from_json(cls, data: Any) -> SampleRecord:
        """A record from its JSON object; ``ValueError`` naming the first field that is missing or of a wrong type
        (other keys are ignored: nothing reads them)."""
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        for key in cls.REQUIRED:
            if key not in data:
                raise ValueError(f"field '{key}': missing")
        for key in cls.NUMBERS:
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"field '{key}': not a number ({value!r})")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{**values, "method": str(data["method"]), "sample_id": str(data["sample_id"])})


def failed_record(base: SampleRecord, error: str) -> SampleRecord:
    """``base`` (what is known of the sample when it failed) as a failure with its one line."""
    return replace(
        base, status="failed", error=error, time_s=None, warmup=False, nfe=None, denoiser_calls=None, grad_evals=None
    )


# --- one stored sample's files (the run's samples/METHOD/ID/ and the sample cache's entries) ---------------------


def write_artifacts(folder: Path, output: EditOutput) -> None:
    if output.image is not None:
        output.image.save(folder / EDITED_FILE)
    if output.mask is not None:
        Image.fromarray(np.asarray(output.mask, dtype=bool).astype(np.uint8) * 255).save(folder / MASK_FILE)
    if output.soft_mask is not None:
        np.savez_compressed(folder / SOFT_MASK_FILE, soft_mask=np.asarray(output.soft_mask, dtype=np.float32))


def read_output(folder: Path, record: SampleRecord | None = None) -> EditOutput:
    """Load a stored sample's artifacts back as an EditOutput (what scoring sees).

    An artifact that cannot be decoded, or that the record says was written but is gone, is a ``SampleError``
    naming the file: that sample fails to score, the others go on."""
    out = EditOutput()

    def path_of(name: str, written: bool | None) -> Path | None:
        path = folder / name
        if path.exists():
            return path
        if written:  # the method produced it: a deleted file, not an absent output
            raise SampleError(f"{path}: missing (the record says the method wrote it)")
        return None

    path: Path | None = None
    try:
        if path := path_of(EDITED_FILE, record and record.has_image):
            with Image.open(path) as im:
                out.image = im.convert("RGB")
        if path := path_of(MASK_FILE, record and record.has_mask):
            with Image.open(path) as im:
                out.mask = np.asarray(im.convert("L")) > 127
        if path := path_of(SOFT_MASK_FILE, None):
            with np.load(path) as z:
                out.soft_mask = z["soft_mask"]
    except SampleError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # truncated or corrupt file
        raise SampleError(f"{path}: cannot read ({error_line(err)})") from err
    if record is not None:
        out.nfe = int(record.nfe or 0)
        out.denoiser_calls = int(record.denoiser_calls or 0)
        out.grad_evals = int(record.grad_evals or 0)
    return out


def write_record_file(folder: Path, record: SampleRecord) -> None:
    """``record.json`` of a sample folder, fsynced (it must be on disk before the folder is renamed into place)."""
    with open(folder / RECORD_FILE, "w") as f:
        json.dump(record.to_json(), f, default=str)
        f.flush()
        os.fsync(f.fileno())


def read_record_file(folder: Path) -> SampleRecord | None:
    """A sample folder's ``record.json``; None when it is missing or unreadable (a torn write: treated as absent)."""
    try:
        return SampleRecord.from_json(json.loads((folder / RECORD_FILE).read_text()))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- small file helpers --------------------------------------------------------------------------------------------


def read_json_object(path: Path, when_unreadable: str) -> dict[str, Any]:
    """A JSON object file; an unreadable one (e.g. truncated) is one warning line ending in ``when_unreadable``
    (what is lost) and ``{}``, so the caller goes on."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s); %s", path, error_line(err), when_unreadable)
        return {}


def next_free_index(folder: Path, *templates: str) -> int:
    """The smallest N >= 1 for which no ``folder / template.format(n=N)`` exists, for every template."""
    n = 1
    while any((folder / t.format(n=n)).exists() for t in templates):
        n += 1
    return n


def valid_directions(directions: Any) -> dict[str, bool]:
    """metric → higher is better, keeping only true/false values of a mapping: results.json files and plugin metrics
    may hold anything, and an odd value means no mark rather than a traceback."""
    if not isinstance(directions, dict):
        return {}
    return {str(metric): better for metric, better in directions.items() if isinstance(better, bool)}


# --- the run folder ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFolder:
    """One run folder (see the module docstring); every method reads or writes one part of it."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # paths
    @property
    def records_path(self) -> Path:
        return self.path / RECORDS_FILE

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def long_table_path(self) -> Path:
        return self.path / LONG_TABLE_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_CSV

    @property
    def score_log_path(self) -> Path:
        return self.path / SCORE_LOG_FILE

    @property
    def job_error_path(self) -> Path:
        return self.path / JOB_ERROR_FILE

    def sample_dir(self, method: str, sample_id: str) -> Path:
        return self.path / SAMPLES_DIR / method / sample_id

    def is_run(self) -> bool:
        """A run folder (tables or records), as opposed to a sweep root or any other folder."""
        return self.results_path.exists() or self.records_path.exists()

    # format version
    def format_version(self) -> Any:
        """The folder's format: its marker's, else its results.json's, else format 1 (the unversioned layout)."""
        for path in (self.path / FORMAT_FILE, self.results_path):
            if not path.exists():
                continue
            try:
                version = json.loads(path.read_text()).get("format_version")
            except (OSError, ValueError, AttributeError):
                continue  # a damaged file: its readers say so; the other one may still know the version
            if version is not None:
                return version
        return LEGACY_VERSION

    def check_format(self) -> None:
        """``RunFormatError`` (one line) unless the folder is of the format this emb reads."""
        version = self.format_version()
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise RunFormatError(
                f"{self.path}: run folder format {version}, this emb reads {FORMAT_VERSION}; read it with the emb "
                "version that wrote it (results.json's provenance names it)"
            )

    # starting a run
    def start(self) -> list[str]:
        """Make the folder a new run's: an earlier run's records and ``samples/`` (a fixed ``hydra.run.dir`` used
        again) are set aside as ``records.previous-N.jsonl`` / ``samples.previous-N/``, not mixed into this run's
        tables (finished samples still come back from the cache; ``samples/`` goes too because lost record lines
        are rebuilt from it). Writes the format marker; returns the names set aside."""
        self.path.mkdir(parents=True, exist_ok=True)
        moved = []
        samples = self.path / SAMPLES_DIR
        if self.records_path.exists():
            n = next_free_index(self.path, "records.previous-{n}.jsonl", "samples.previous-{n}")
            self.records_path.rename(self.path / f"records.previous-{n}.jsonl")
            moved.append(f"records.previous-{n}.jsonl")
            if samples.is_dir():
                samples.rename(self.path / f"samples.previous-{n}")
                moved.append(f"samples.previous-{n}/")
        (self.path / FORMAT_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION}) + "\n")
        return moved

    # records
    def add(self, record: SampleRecord, cache_folder: Path | None) -> SampleRecord:
        """Append a finished sample; link its cached artifacts (if any) into ``samples/METHOD/ID/``."""
        if cache_folder is None:
            return self._append(record)
        dest = self.sample_dir(record.method, record.sample_id)
        dest.mkdir(parents=True, exist_ok=True)
        for name in (*ARTIFACT_FILES, RECORD_FILE):
            src = cache_folder / name
            if src.exists():
                target = dest / name
                if target.exists():
                    target.unlink()
                try:
                    os.link(src, target)  # same bytes, no copy
                except OSError:
                    shutil.copy2(src, target)
        return self._append(replace(record, artifacts=str(dest.relative_to(self.path))))

    def _append(self, record: SampleRecord) -> SampleRecord:
        with open(self.records_path, "a") as f:
            f.write(json.dumps(record.to_json(), default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def records(self) -> list[SampleRecord]:
        """The run's per-sample records, last one per (method, sample) winning (a rerun may append again).

        Every unreadable line (not JSON, not an object, a required key missing) is one warning naming
        ``records.jsonl:N``; a cut-off last line, the trace of a killed run (the sample in flight), is one info
        line. Nothing finished is lost to such a line: a sample whose ``samples/METHOD/ID/record.json`` (written
        before its line) has no readable line is taken from there, and one line says how many were."""
        path = self.records_path
        if not path.exists():
            return []
        latest: dict[tuple[str, str], SampleRecord] = {}
        damaged = 0
        with open(path, errors="replace") as f:
            lines = f.read().split("\n")
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        for i, line in enumerate(lines):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                data, problem = None, f"not JSON ({err.msg})"
            else:
                try:
                    rec = SampleRecord.from_json(data)
                except ValueError as err:
                    problem = str(err)
                else:
                    latest[(rec.method, rec.sample_id)] = rec
                    continue
            damaged += 1
            if i == last and data is None:
                log.info("%s:%d: cut off (the sample in flight when the run was stopped); left out", path, i + 1)
            else:
                log.warning("%s:%d: unreadable record, left out: %s", path, i + 1, problem)
        if damaged:
            rebuilt = self._records_from_sample_folders(latest)
            if rebuilt:
                log.warning("%s: %d record(s) rebuilt from %s/*/*/%s", path, rebuilt, SAMPLES_DIR, RECORD_FILE)
        return list(latest.values())

    def _records_from_sample_folders(self, latest: dict[tuple[str, str], SampleRecord]) -> int:
        """Add to ``latest`` every finished sample of ``samples/`` that has no record yet; return how many.
        Failed samples have no folder (they are not cached): a rerun tries them again anyway."""
        added = 0
        for rec_path in sorted((self.path / SAMPLES_DIR).glob(f"*/*/{RECORD_FILE}")):
            folder = rec_path.parent
            method, sample_id = folder.parent.name, folder.name
            if (method, sample_id) in latest:
                continue
            rec = read_record_file(folder)
            if rec is None or (rec.method, rec.sample_id) != (method, sample_id):
                continue
            latest[(method, sample_id)] = replace(rec, artifacts=str(folder.relative_to(self.path)))
            added += 1
        return added

    def read_output(self, record: SampleRecord) -> EditOutput:
        """A record's stored artifacts (``SampleError`` naming the file when one is gone or unreadable)."""
        if record.artifacts is None:
            raise SampleError(f"{self.records_path}: field 'artifacts': missing")
        return read_output(self.path / record.artifacts, record)

    # fingerprints
    def read_fingerprints(self) -> dict[str, str]:
        """Record key → the sample's ``score_fingerprint`` when the run was first scored (empty for older runs)."""
        path = self.path / FINGERPRINTS_FILE
        if not path.exists():
            return {}
        data = read_json_object(path, "changed dataset samples cannot be detected")
        return {str(k): str(v) for k, v in data.items()}

    def write_fingerprints(self, fingerprints: dict[str, str]) -> None:
        tmp = self.path / f".{FINGERPRINTS_FILE}.tmp"
        tmp.write_text(json.dumps(fingerprints, sort_keys=True))
        os.replace(tmp, self.path / FINGERPRINTS_FILE)  # a killed write never leaves half a file

    # tables
    def write_long_table(self, long: pd.DataFrame) -> None:
        long.to_parquet(self.long_table_path, index=False)

    def read_long_table(self) -> pd.DataFrame | None:
        """``samples.parquet`` (None when absent); ``ValueError`` with the warning line when it cannot be read."""
        if not self.long_table_path.exists():
            return None
        try:
            long = pd.read_parquet(self.long_table_path)
            missing = [c for c in ("method", "sample_id", "metric", "value") if c not in long.columns]
            if missing:
                raise ValueError(f"column '{missing[0]}' missing")
        except (OSError, ValueError) as err:  # truncated or foreign file (pyarrow's ArrowInvalid is a ValueError)
            hint = f"; `emb score {self.path}` rebuilds it from {RECORDS_FILE}" if self.records_path.exists() else ""
            raise ValueError(f"{self.long_table_path}: unreadable ({error_line(err)}), run left out{hint}") from err
        return long

    def write_summary(self, summary: pd.DataFrame, markdown: str, latex: str | None) -> None:
        """summary.csv (all numbers), summary.md and, for a non-empty table, summary.tex."""
        summary.to_csv(self.summary_path, index=False)
        (self.path / SUMMARY_MD).write_text(markdown + "\n")
        if latex is not None:
            (self.path / SUMMARY_TEX).write_text(latex)

    def read_summary(self) -> pd.DataFrame | None:
        """summary.csv for its dataset-level values (None when absent; an unreadable one is a warning and None:
        only those values are lost)."""
        if not self.summary_path.exists():
            return None
        try:
            return pd.read_csv(self.summary_path)
        except (OSError, ValueError) as err:
            log.warning("%s: unreadable (%s); its dataset-level values left out", self.summary_path, error_line(err))
            return None

    def read_summary_strictly(self) -> pd.DataFrame:
        """summary.csv, a damaged one being one ``ValueError`` line (a missing one: ``FileNotFoundError``)."""
        return _read_strictly(self.summary_path, pd.read_csv)

    # results.json
    def write_results(self, payload: dict[str, Any]) -> None:
        self.results_path.write_text(json.dumps({**payload, "format_version": FORMAT_VERSION}, indent=2, default=str))

    def read_results(self, when_unreadable: str) -> dict[str, Any]:
        """results.json as a dict ({} when absent; an unreadable one is one warning ending in ``when_unreadable``)."""
        return read_json_object(self.results_path, when_unreadable) if self.results_path.exists() else {}

    def read_results_strictly(self) -> dict[str, Any]:
        """results.json ({} when absent), a damaged one being one ``ValueError`` line naming it and the way back."""
        if not self.results_path.exists():
            return {}
        data = _read_strictly(self.results_path, lambda p: json.loads(p.read_text()))
        return data if isinstance(data, dict) else {}

    def directions(self) -> dict[str, bool]:
        """metric → higher is better, as the run's results.json says (empty when it is missing or damaged)."""
        try:
            directions = json.loads(self.results_path.read_text()).get("higher_is_better")
        except (OSError, ValueError, AttributeError):
            return {}  # the tables' readers say what is wrong with a damaged run: no second line for a mark
        return valid_directions(directions)

    def keep_previous_tables(self) -> Path | None:
        """Copy the tables to ``scores.previous-N/`` before a re-score with another metric set rewrites them."""
        present = [name for name in TABLE_FILES if (self.path / name).exists()]
        if not present:
            return None
        dest = self.path / f"scores.previous-{next_free_index(self.path, 'scores.previous-{n}')}"
        dest.mkdir()
        for name in present:
            shutil.copy2(self.path / name, dest / name)
        return dest

    def holds_only_score_log(self) -> bool:
        return [p.name for p in self.path.iterdir()] == [SCORE_LOG_FILE]

    # reports
    def write_report(self, markdown: str, table: pd.DataFrame) -> None:
        (self.path / REPORT_MD).write_text(markdown)
        table.to_csv(self.path / REPORT_CSV, index=False)

    @property
    def plots_dir(self) -> Path:
        return self.path / PLOTS_DIR

    @property
    def report_html_path(self) -> Path:
        return self.path / REPORT_HTML

    def clear_plots(self) -> None:
        """Remove the plots an earlier report wrote (a method or metric gone since would leave a stale one)."""
        if self.plots_dir.is_dir():
            for path in self.plots_dir.iterdir():
                if path.suffix in PLOT_SUFFIXES and path.is_file():
                    path.unlink()

    def write_report_html(self, text: str) -> Path:
        tmp = self.path / f".{REPORT_HTML}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.report_html_path)  # a page is whole or absent
        return self.report_html_path

    # a multirun job's error
    def write_job_error(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.job_error_path.write_text(f"{line}\n")

    def clear_job_error(self) -> None:
        self.job_error_path.unlink(missing_ok=True)

    def has_job_error(self) -> bool:
        return self.job_error_path.exists()

    # config and overrides
    def load_config(self) -> Any:
        """The resolved config the run was made with: ``results.json``'s (resolved inside the run, so paths such as
        ``run.cache_dir`` are the ones it used), else Hydra's saved ``.hydra/config.yaml`` of a run that stopped
        before its tables, with ``${hydra:...}`` resolved from the run's own ``.hydra/hydra.yaml``."""
        from omegaconf import OmegaConf

        self.check_format()
        hydra_cfg = self.path / HYDRA_DIR / "config.yaml"
        if self.results_path.exists():
            try:
                config = json.loads(self.results_path.read_text())["config"]
                if not isinstance(config, dict):
                    raise TypeError("not an object")
                return OmegaConf.create(config)
            except (ValueError, KeyError, TypeError) as err:  # truncated or hand-edited: Hydra's copy is as good
                problem = f"{self.results_path}: field 'config': unreadable ({error_line(err, with_type=True)})"
                if not hydra_cfg.exists():
                    raise ValueError(f"{problem}, and no {HYDRA_DIR}/config.yaml to fall back on") from err
                log.warning("%s; using %s", problem, hydra_cfg)
        if not hydra_cfg.exists():
            raise FileNotFoundError(f"{self.path}: not a run directory (no {RESULTS_FILE} or {HYDRA_DIR}/config.yaml)")
        text = hydra_cfg.read_text()
        hydra_yaml = self.path / HYDRA_DIR / "hydra.yaml"
        if hydra_yaml.exists():
            # ${hydra:runtime.cwd} and the like: the values the run had (outside a Hydra app the resolver has none)
            hydra_node = OmegaConf.load(hydra_yaml).hydra

            def run_value(match: re.Match) -> str:
                value = OmegaConf.select(hydra_node, match.group(1), throw_on_resolution_failure=False)
                return match.group(0) if value is None else str(value)

            text = re.sub(r"\$\{hydra:([\w.]+)\}", run_value, text)
        cfg = OmegaConf.create(text)
        try:
            OmegaConf.resolve(cfg)
        except Exception as err:  # noqa: BLE001 — e.g. an environment variable the run had; values stay as written
            log.warning("%s: config not fully resolvable outside its run (%s)", hydra_cfg, error_line(err))
        return cfg

    def swept_values(self) -> dict[str, str]:
        """The Hydra overrides of a job (``.hydra/overrides.yaml``) as columns, e.g. {'method': 'identity'}; for a
        re-score written elsewhere (``emb score RUN --out DIR``), its run's overrides and then its own."""
        from omegaconf import OmegaConf

        overrides: list[str] = []
        rescore = self.read_results(f"left out, `emb score` rewrites {RESULTS_FILE}")
        if "rescored_from" in rescore and (self.path / rescore["rescored_from"]).resolve() != self.path.resolve():
            source = RunFolder(self.path / rescore["rescored_from"])  # relative to the re-score's folder
            overrides += [f"{k}={v}" for k, v in source.swept_values().items()]
            overrides += rescore.get("rescore_overrides", [])
        path = self.path / HYDRA_DIR / "overrides.yaml"
        if path.exists():
            overrides = [str(ov) for ov in OmegaConf.load(path) or []] + overrides
        out = {}
        for ov in overrides:
            key, _, value = str(ov).lstrip("+~").partition("=")
            if key.startswith("hydra.") or key.startswith("logger"):
                continue
            out[key] = value
        return out


def generation_record(results: dict[str, Any]) -> dict[str, Any]:
    """What an in-place re-score carries over from the run's results.json (``results``): how the samples were
    generated (``generation``: computed/reused counts, ``model``: the weights' digests) and the provenance of the
    generating code (``generation_provenance``; ``provenance`` then stamps the scoring)."""
    out = {k: results[k] for k in ("generation", "model") if k in results}
    provenance = results.get("generation_provenance") or results.get("provenance")
    if provenance:
        out["generation_provenance"] = provenance
    return out


def tables_metric_set(results: dict[str, Any]) -> Any:
    """The metric set a run's current tables were scored with (its last re-score's, else the run's own), from its
    results.json (``results``); None when that is missing or unreadable."""
    return results.get("rescored_with") or results.get("metrics_config") or None


def _read_strictly(path: Path, read: Callable[[Path], Any]) -> Any:
    """``read(path)``; a damaged file (truncated, hand-edited) is one ``ValueError`` line naming it and the way back
    (a missing one stays a ``FileNotFoundError``)."""
    try:
        return read(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable ({error_line(err)}); `emb score {path.parent}` rewrites it") from err


# --- finding run folders, sweeps -------------------------------------------------------------------------------------


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Run directories (those with results.json or records.jsonl) at or below each path, each once."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if RunFolder(p).is_run():
            found.append(p)
            continue
        found += sorted({q.parent for q in p.rglob(RECORDS_FILE)}, key=lambda q: str(q))
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def run_directions(run_dirs: Iterable[Path]) -> dict[str, bool]:
    """metric → higher is better, from the runs' results.json; a metric the runs disagree on is left unmarked."""
    found: dict[str, set[bool]] = {}
    for run in run_dirs:
        for metric, better in RunFolder(run).directions().items():
            found.setdefault(metric, set()).add(better)
    return {metric: next(iter(b)) for metric, b in found.items() if len(b) == 1}


@dataclass
class SweepJob:
    """One job of a sweep, as ``sweep.json`` lists it: its folder (relative to the root) and its overrides."""

    run: str
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class SweepBest:
    """The best job of a sweep with an ``objective``: the summary metric, which way is better, its value there."""

    objective: str
    direction: str  # maximize / minimize
    value: float
    run: str
    overrides: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        settings = " ".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"Best {self.objective} ({self.direction}): {self.value:.6g} in job {self.run}" + (
            f" ({settings})" if settings else ""
        )


def write_sweep_file(
    root: Path, jobs: list[SweepJob], provenance: dict[str, Any], best: SweepBest | None = None
) -> None:
    """``sweep.json``: what made the merged tables (versions, git state), which job folder holds which overrides,
    and with an objective the best job."""
    payload: dict[str, Any] = {"provenance": provenance, "jobs": [asdict(job) for job in jobs]}
    if best is not None:
        payload["best"] = asdict(best)
    (root / SWEEP_FILE).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def read_sweep_jobs(root: Path) -> list[Path] | None:
    """The job folders ``sweep.json`` lists (None without a readable one: then every run below the root counts)."""
    path = Path(root) / SWEEP_FILE
    if not path.exists():
        return None
    jobs = read_json_object(path, "every run folder below it is taken").get("jobs")
    if not isinstance(jobs, list):
        return None
    runs = [Path(root) / str(job["run"]) for job in jobs if isinstance(job, dict) and "run" in job]
    return [run for run in runs if RunFolder(run).is_run()]


def read_sweep_best(root: Path) -> SweepBest | None:
    """The best job ``sweep.json`` names (a sweep with an ``objective``); None without one or when it is malformed."""
    path = Path(root) / SWEEP_FILE
    best = read_json_object(path, "its best job left out").get("best") if path.exists() else None
    try:
        return SweepBest(**best) if isinstance(best, dict) else None
    except TypeError:  # hand-edited: other keys
        return None


def write_sweep_summary(root: Path, merged: pd.DataFrame, markdown: str) -> Path:
    """The sweep root's merged summary.csv and summary.md; returns the CSV's path."""
    merged.to_csv(root / SUMMARY_CSV, index=False)
    (root / SUMMARY_MD).write_text(markdown + "\n")
    return root / SUMMARY_CSV
