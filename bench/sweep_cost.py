"""Cost of a post-hoc threshold sweep: K values of mask IoU's scoring threshold vs one run of the same method and data.

Three sides, each a real `emb run` command line in its own process with its own empty sample cache (the models'
cache is shared, built once before timing):

- one run: ``method=M`` once (generates every sample, scores it);
- sweep: ``emb run -m ... metrics.metrics.0.source=soft metrics.metrics.0.threshold=t1,...,tK`` — the first job
  generates, the other K-1 reuse the cached samples and re-score them (DESIGN: expensive once, cheap many times);
- naive (``--naive``, on by default): the same sweep with ``run.reuse_cache=false``, every job generating again, as
  a harness without a sample cache would.

The default world is the default run's (toy world data, model and metric preset) with one method that stores soft
masks (``--method``, DiffEdit). Timings alternate the sides ``--repeats`` times and keep each side's best (other
processes share the machine). Goal: sweep / one run ≤ 1.1 (naive: about K).

Last lines: ``sweep / one run: X.XX`` and ``naive sweep / one run: X.XX``.
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


def emb_run(args: list[str], cache: Path, models: Path, cwd: Path) -> float:
    """Wall time of one `emb run` process (it must succeed)."""
    env = {**os.environ, "EMB_CACHE_DIR": str(cache), "EMB_MODEL_CACHE": str(models), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "run", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"emb run {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="diffedit")
    parser.add_argument("--world", default="model=toyworld dataset=toyworld metrics=toyworld", help="overrides")
    parser.add_argument("--limit", type=int, default=16, help="samples (the default run: 16)")
    parser.add_argument("--k", type=int, default=5, help="threshold values of the sweep")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive side (K runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of every side")
    args = parser.parse_args()
    thresholds = ",".join(f"{(i + 1) / (args.k + 1):.3g}" for i in range(args.k))
    base = [*args.world.split(), f"method={args.method}", f"dataset.limit={args.limit}"]
    base.append(f"run.num_threads={args.threads}")
    sweep = ["-m", *base, "metrics.metrics.0.source=soft", f"metrics.metrics.0.threshold={thresholds}"]
    sides = {"one run": base, "sweep": sweep}
    if args.naive:
        sides["naive sweep"] = [*sweep, "run.reuse_cache=false"]
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="emb-sweep-cost-") as tmp:
        folder = Path(tmp)
        models = folder / "models"
        emb_run([*base, "dataset.limit=1"], folder / "warm-cache", models, folder)  # models built, files in page cache
        for repeat in range(args.repeats):
            for name, overrides in sides.items():
                cache = folder / f"cache-{name.replace(' ', '-')}-{repeat}"
                out = folder / f"out-{name.replace(' ', '-')}-{repeat}"
                where = "hydra.sweep.dir" if overrides[0] == "-m" else "hydra.run.dir"
                t = emb_run([*overrides, f"{where}={out}"], cache, models, folder)
                times[name].append(t)
                print(f"{name}: {t:.1f} s", flush=True)
    best = {name: min(ts) for name, ts in times.items()}
    print(
        f"\n{args.method} on {args.limit} samples ({args.world}), K = {args.k} thresholds ({thresholds}), "
        f"threads {args.threads}, best of {args.repeats}"
    )
    for name, t in best.items():
        print(f"{name}: {t:.1f} s")
    print(f"sweep / one run: {best['sweep'] / best['one run']:.2f} (goal <= 1.10)")
    if args.naive:
        print(f"naive sweep / one run: {best['naive sweep'] / best['one run']:.2f}")


if __name__ == "__main__":
    main()
