"""Validation-only (issue 10): which pair settings serve the best (robust) rules on compas three tuning seeds.

Run: .venv/bin/python bench/best_rule_generators.py (tune cache: ~/.cache/genre-pipeline/tune); it reads the
training split only (`genre.evaluation.tune.tuning_setup`). Log of the 7 Dec run: docs/tuning/compas-best-rule-generators.log."""
import json, sys, time, logging
import numpy as np
from genre.evaluation import tune as T
logging.basicConfig(level=logging.WARNING)
cands = [dict(lam=l, size="small", gamma=g, target_lof=20) for g, l in
         [(0.7, 20.0), (0.6, 20.0), (0.5, 20.0), (0.6, 10.0), (0.5, 10.0)]]
built = [T.tuning_setup("compas", seed=s, max_factuals=500) for s in (0, 1, 2)]
setups, facts = [b[0] for b in built], [b[1] for b in built]
grid = [s for s in T.BEST_GRID if s.select.startswith("robust")]
print(len(grid), "settings", flush=True)
out = []
for cand in cands:
    t0 = time.time()
    genres = [T._train_cached(s, *T.build_configs("compas", 7, cand, 120, s.seed)) for s in setups]
    rows = T.score_seeds(genres, setups, facts, grid)
    ok = [r for r in rows if r["shortfall"] == 0]
    best = min(rows, key=T.rank)
    print(cand, f"{time.time()-t0:.0f}s", "best:", best["sampling"], {k: round(best[k], 3) for k in ("cost", "validity", "plausibility")},
          "per seed", best["per_seed"], "n reaching:", len(ok), flush=True)
    out.append({"cand": cand, "rows": rows})
json.dump(out, open("docs/tuning/compas-best-rule-generators.json", "w"))
