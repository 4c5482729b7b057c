"""Where GenRe's time goes (issue 14), stage by stage, for a batch, a single query and the serving path.

    GENRE_HOME=... .venv/bin/python bench/profile_breakdown.py --datasets compas,adult [--out bench/out/profile.json]

Each stage is timed on its own, median of several calls, in one process (one intra-op thread, as the
sampler runs): the encoder (memory and its cross-attention keys and values), the decoding steps (the rest of
`GenRe.sample`), the selection (h on the k samples and the choice), and on the serving path
(`genre.core.serving.answer`) reading and checking the rows (pandas), encoding, the row seeds, recourse, decoding
to the applicant's units, filling the answer table, and JSON. It uses only what both the old and the new
sampler have, so it also runs on a checkout from before issue 14 (PYTHONPATH=<old checkout>).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def sampler_stages(genre, factuals: np.ndarray, k: int, temperature: float, repeats: int) -> dict:
    model, h = genre.generator, genre.classifier
    x = torch.as_tensor(factuals)
    with torch.no_grad():
        encoder = _median_ms(lambda: model.memory_kv(model.encode(x, x.new_zeros(len(x)))), repeats)
    sample = _median_ms(lambda: genre.sample(factuals, k=k, temperature=temperature, seed=0), repeats)
    flat = genre.sample(factuals, k=k, temperature=temperature, seed=0).reshape(len(factuals) * k, -1)
    h_ms = _median_ms(lambda: h.predict_proba(flat), repeats)
    generate = _median_ms(lambda: genre.generate(factuals, k=k, temperature=temperature, seed=0), repeats)
    return {"factuals": len(factuals), "generate_ms": generate, "encoder_ms": encoder,
            "decoder_steps_ms": sample - encoder, "h_on_samples_ms": h_ms,
            "selection_rest_ms": generate - sample - h_ms, "recourses_per_second": len(factuals) / generate * 1e3}


def serving_stages(genre, rows, k: int, temperature: float, repeats: int) -> dict:
    from genre.core import serving

    enc = genre.encoder
    kw = dict(k=k, temperature=temperature, select="max_prob", seed=0, monotone=True)
    total = _median_ms(lambda: serving.answer(rows, genre, **kw), repeats)
    typed, _ = serving.read_rows(rows, enc)
    read = _median_ms(lambda: serving.read_rows(rows, enc), repeats)
    encode = _median_ms(lambda: enc.transform(typed), repeats)
    encoded = enc.transform(typed)
    seeds = _median_ms(lambda: serving.row_seeds(typed), repeats)
    s = serving.row_seeds(typed)
    recourse = _median_ms(lambda: genre.generate(encoded, row_seeds=s, **kw), repeats)
    chosen = genre.generate(encoded, row_seeds=s, **kw)
    h_ms = _median_ms(lambda: genre.classifier.predict_proba(chosen), repeats)
    units = _median_ms(lambda: enc.inverse_transform(chosen), repeats)
    answer = serving.answer(rows, genre, **kw)
    to_json = _median_ms(lambda: answer.to_json(orient="split"), repeats)
    fill = total - read - encode - seeds - recourse - 2 * h_ms - units
    return {"rows": len(rows), "answer_ms": total, "read_and_check_rows_ms": read, "encode_ms": encode,
            "row_seeds_ms": seeds, "recourse_ms": recourse, "h_ms": 2 * h_ms, "to_units_ms": units,
            "fill_answer_table_ms": fill, "to_json_ms": to_json, "rows_per_second": len(rows) / total * 1e3}


def profile(name: str, repeats: int) -> dict:
    from genre.evaluation.protocol import load_protocol
    from genre.core.classifier import rejected_indices
    from genre.evaluation.genre_methods import load_or_train, sampling

    setup = load_protocol(name, seed=0, progress=False)
    genre = load_or_train(setup, progress=False)
    p = sampling(setup, "paper")
    rejected = rejected_indices(setup.classifier.predict_proba(setup.X_test))
    pick = np.random.default_rng(0).choice(rejected, size=1000, replace=len(rejected) < 1000)
    factuals = setup.X_test[pick]
    raw = setup.encoder.inverse_transform(factuals).astype(object)
    return {"dataset": name, "k": p.k, "temperature": p.temperature,
            "batch": sampler_stages(genre, factuals, p.k, p.temperature, repeats),
            "single": sampler_stages(genre, factuals[:1], p.k, p.temperature, repeats * 10),
            "serving_1000": serving_stages(genre, raw, p.k, p.temperature, repeats),
            "serving_1": serving_stages(genre, raw.iloc[:1].reset_index(drop=True), p.k, p.temperature, repeats * 10),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="compas,adult")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/out/profile.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [profile(d.strip(), args.repeats) for d in args.datasets.split(",") if d.strip()]
    for r in rows:
        print(json.dumps(r))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
