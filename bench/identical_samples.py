"""Are two versions of the sampler bit-identical? Save what one version draws, then compare with another.

    # on the old checkout (or with PYTHONPATH pointing at it), then on the new one:
    GENRE_HOME=... python bench/identical_samples.py save /tmp/before --datasets compas,adult,heloc
    GENRE_HOME=... python bench/identical_samples.py save /tmp/after --datasets compas,adult,heloc
    python bench/identical_samples.py compare /tmp/before /tmp/after

For each data set's recipe generator (`genre.evaluation.genre_methods.load_or_train`, protocol seed 0) and 1000 rejected
test factuals (as `genre bench` draws them): the k samples at the paper rule's and the best rule's
temperatures, the re-run-prefix path on 50 factuals, the serving path (monotone, per-row seeds), a small
batch with another seed and batch size, the recourses of `genre`, `genre-best`, `genre-mincost` and
`genre-robust-mincost`, and 200 single queries (one factual per call) at the paper rule's setting, plain and
as serving asks them (monotone, per-row seeds). `save --compile` answers the single queries through the
compiled graph (`GenRe.compile_single_queries`); `compare` against an eager save checks it.
`compare` checks every array byte for byte.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


SINGLE = 200


def save(out: Path, datasets: list[str], compile: bool = False) -> None:
    from genre.evaluation.protocol import load_protocol
    from genre.core.classifier import rejected_indices
    from genre.evaluation.genre_methods import _generate, load_or_train, sampling

    out.mkdir(parents=True, exist_ok=True)
    for name in datasets:
        s = load_protocol(name, seed=0, progress=False)
        g = load_or_train(s, progress=False)
        p, b = sampling(s, "paper"), sampling(s, "best")
        rejected = rejected_indices(s.classifier.predict_proba(s.X_test))
        fx = s.X_test[np.random.default_rng(0).choice(rejected, size=1000, replace=len(rejected) < 1000)]
        res = {"factuals": fx}
        t0 = time.perf_counter()
        res["sample_paper"] = g.sample(fx, k=p.k, temperature=p.temperature, seed=0)
        res["sample_paper_s"] = time.perf_counter() - t0
        res["sample_best"] = g.sample(fx, k=b.k, temperature=b.temperature, seed=0)
        res["sample_rerun"] = g.sample(fx[:50], k=p.k, temperature=p.temperature, seed=0, incremental=False)
        seeds = np.arange(1000, dtype=np.uint64) * 7919 + 12345
        res["sample_rowseeds_mono"] = g.sample(fx, k=p.k, temperature=p.temperature, seed=0, monotone=True,
                                               row_seeds=seeds)
        res["sample_small_batch"] = g.sample(fx[:37], k=p.k, temperature=p.temperature, seed=3, batch_size=50)
        res["genre"] = _generate(s, "max_prob", factuals=fx)
        res["genre_best"] = _generate(s, b.select, "best", factuals=fx)
        res["genre_mincost"] = _generate(s, "min_cost", factuals=fx)
        res["genre_robust_mincost"] = _generate(s, "robust_min_cost", factuals=fx)
        one = g._with()  # a GenRe of its own for single queries: the compiled graphs stay out of the rest
        if compile:
            t0 = time.perf_counter()
            if not all(one.compile_single_queries(p.k, p.temperature, monotone) for monotone in (False, True)):
                raise SystemExit(f"{name}: a single-query setting fell back to the eager path (see the log)")
            print(f"{name}: compiled both single-query settings in {time.perf_counter() - t0:.0f} s", flush=True)
        res["single_paper"] = np.concatenate([one.sample(fx[i : i + 1], k=p.k, temperature=p.temperature, seed=0)
                                              for i in range(SINGLE)])
        res["single_rowseeds_mono"] = np.concatenate([
            one.sample(fx[i : i + 1], k=p.k, temperature=p.temperature, seed=0, monotone=True, row_seeds=seeds[i : i + 1])
            for i in range(SINGLE)])
        np.savez(out / f"{name}.npz", **res)
        print(f"{name}: saved {len(res)} arrays to {out / (name + '.npz')}", flush=True)


def compare(a_dir: Path, b_dir: Path) -> int:
    differ = 0
    for path in sorted(a_dir.glob("*.npz")):
        a, b = np.load(path), np.load(b_dir / path.name)
        for key in a.files:
            if key.endswith("_s"):
                continue
            x, y = a[key], b[key]
            same = x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
            rows = "" if same or x.shape != y.shape else f" ({int((x != y).reshape(len(x), -1).any(1).sum())} rows)"
            print(f"{path.stem:7s} {key:22s} {str(x.shape):16s} {'bit-identical' if same else 'DIFFERS' + rows}")
            differ += not same
    print("all bit-identical" if differ == 0 else f"{differ} arrays differ")
    return 1 if differ else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_save = sub.add_parser("save")
    p_save.add_argument("out", type=Path)
    p_save.add_argument("--datasets", default="compas,adult,heloc")
    p_save.add_argument("--compile", action="store_true", help="single queries through the compiled graph")
    p_cmp = sub.add_parser("compare")
    p_cmp.add_argument("a", type=Path)
    p_cmp.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.cmd == "save":
        save(args.out, [d.strip() for d in args.datasets.split(",") if d.strip()], args.compile)
    else:
        sys.exit(compare(args.a, args.b))


if __name__ == "__main__":
    main()
