"""Peak memory of the harness as the sample count grows: `emb run` of ``identity`` over N synthetic samples, and
`emb table` / `emb score` on the largest run.

``identity`` returns the source image and an empty mask, so what is measured is the harness: the dataset stream, the
sample cache and run folder, scoring (the ``default`` metric preset: its pixel metrics and mask scores; its network
metrics have no weights here and are skipped) and the tables. Each command is its own process; its peak resident set
size is the kernel's (``wait4``'s ``ru_maxrss``), so imports (torch alone is ~0.4 GiB) are part of it.

Goals: < 2 GiB at 10k samples, and flat in the sample count (the ratio of the largest count's peak to the smallest's
near 1). ``--counts`` sets the counts (default 1000 10000; on a busy machine 10k samples take a while).

Last lines: one per command and count, then ``peak RSS growth, run N2 vs N1: X.XX`` and the largest peak.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3


def peak_rss(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of one `emb` command; its output goes to ``log``."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *argv], cwd=cwd, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"emb {' '.join(argv)} failed; its output: {log}\n{log.read_text()[-3000:]}")
    return usage.ru_maxrss * 1024, elapsed  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--metrics", default="default", help="metric preset")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder (default: a temp one)")
    args = parser.parse_args()
    counts = sorted(args.counts)
    tmp = tempfile.TemporaryDirectory(prefix="emb-memory-") if args.keep is None else None
    folder = Path(tmp.name) if tmp else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env |= {"EMB_CACHE_DIR": str(folder / "cache"), "EMB_MODEL_CACHE": str(folder / "models")}
    lines = []
    peaks: dict[str, dict[int, int]] = {"run": {}, "table": {}, "score": {}}
    try:
        for n in counts:
            run_dir = folder / f"run-{n}"
            world = ["method=identity", "model=tiny", "dataset=synthetic", f"dataset.num_samples={n}"]
            argv = ["run", *world, f"dataset.limit={n}", f"metrics={args.metrics}", f"hydra.run.dir={run_dir}"]
            peak, seconds = peak_rss(argv, env, folder, folder / f"run-{n}.log")
            peaks["run"][n] = peak
            lines.append(f"emb run identity, {n} samples: peak RSS {peak / GIB:.3f} GiB ({seconds:.0f} s)")
            print(lines[-1], flush=True)
        largest = counts[-1]
        run_dir = folder / f"run-{largest}"
        for cmd, argv in (("table", ["table", str(run_dir)]), ("score", ["score", str(run_dir)])):
            peak, seconds = peak_rss(argv, env, folder, folder / f"{cmd}-{largest}.log")
            peaks[cmd][largest] = peak
            lines.append(f"emb {cmd} on the {largest}-sample run: peak RSS {peak / GIB:.3f} GiB ({seconds:.0f} s)")
            print(lines[-1], flush=True)
    finally:
        if tmp:
            tmp.cleanup()
    print()
    print("\n".join(lines))
    if len(counts) > 1:
        small, big = counts[0], counts[-1]
        growth = peaks["run"][big] / peaks["run"][small]
        print(f"peak RSS growth, run {big} vs {small} samples: {growth:.2f} (flat: 1.00)")
    worst = max(max(p.values()) for p in peaks.values() if p)
    print(f"largest peak RSS: {worst / GIB:.3f} GiB (goal < 2 GiB at 10k samples)")


if __name__ == "__main__":
    main()
