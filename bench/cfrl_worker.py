"""CFRL (alibi 0.9.6 `CounterfactualRLTabular`, pytorch backend) for `genre bench-peers`, run in `.venv-cfrl`.

alibi needs numpy < 2, the main venv has numpy 2, so this script runs in its own venv (`make bench-deps`) and
imports nothing from `genre`. `genre.bench.peers_cfrl` writes the job as an .npz and reads the answer from another:

    .venv-cfrl/bin/python bench/cfrl_worker.py job.npz answer.npz [--cache DIR]

job.npz: `X_train`, `factuals` (rows in codes: a categorical's category index, other features in their own
units), `lo`, `span` (h's min-max encoding: encoded = (codes - lo) / span), `h_w0`, `h_b0`, ... (h's layers)
and `meta` (JSON: feature names, categorical feature -> categories, immutable features, monotone ranges,
integer features, and the settings below).
answer.npz: `recourses` (codes), `latency_seconds` (one per single query), `batch_seconds` (median of 5
calls on all factuals, at the fastest of the `answer_threads` thread counts, `answer_threads` then says
which; `batch_seconds_by_threads` holds them all), `ae_seconds`, `fit_seconds`, `loaded` (1 if the trained
explainer came from the cache), `versions` (JSON).

The recipe is alibi's own Adult example: a heterogeneous autoencoder (`ADULTEncoder`/`ADULTDecoder`,
hidden 128, latent 15, 50 epochs of batch 128, Adam 1e-3, MSE for the numerical block and cross-entropy per
categorical), then DDPG with sparsity and consistency coefficients 0.5, batch 100 and `train_steps` steps.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def h_predictor(job: dict):
    """h, the protocol's 10-10-10 MLP, rebuilt from its weights; codes -> (n, 2) class probabilities."""
    layers, i = [], 0
    while f"h_w{i}" in job:
        linear = nn.Linear(*job[f"h_w{i}"].shape[::-1])
        linear.weight.data = torch.as_tensor(job[f"h_w{i}"], dtype=torch.float32)
        linear.bias.data = torch.as_tensor(job[f"h_b{i}"], dtype=torch.float32)
        layers += [linear, nn.ReLU()]
        i += 1
    net = nn.Sequential(*layers[:-1]).eval()
    lo, span = job["lo"], job["span"]

    @torch.no_grad()
    def predict(X: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(((np.asarray(X, dtype=np.float64) - lo) / span).astype(np.float32))
        p = torch.sigmoid(net(z)).squeeze(-1).double().numpy()
        return np.stack([1.0 - p, p], axis=1)

    return predict


def train_autoencoder(X: np.ndarray, meta: dict, preprocessor, seed: int):
    from alibi.models.pytorch import HeAE
    from alibi.models.pytorch.cfrl_models import ADULTDecoder, ADULTEncoder

    category_map = {int(k): v for k, v in meta["category_map"].items()}
    numerical = [i for i in range(X.shape[1]) if i not in category_map]
    X_ohe = preprocessor(X).astype(np.float32)
    targets = [X_ohe[:, : len(numerical)]] + [X[:, i].astype(np.int64) for i in category_map]
    torch.manual_seed(seed)
    output_dims = [len(numerical)] + [len(v) for v in category_map.values()]
    heae = HeAE(encoder=ADULTEncoder(hidden_dim=128, latent_dim=15), decoder=ADULTDecoder(hidden_dim=128, output_dims=output_dims))
    heae(torch.as_tensor(X_ohe[:2]))  # materialises the lazy layers before the optimiser sees them
    losses = [nn.MSELoss()] + [nn.CrossEntropyLoss()] * len(category_map)
    weights = [1.0] + [1.0 / max(len(category_map), 1)] * len(category_map)
    heae.compile(optimizer=torch.optim.Adam(heae.parameters(), lr=1e-3), loss=losses, loss_weights=weights,
                 metrics={})  # several heads: alibi wants a dict, even an empty one
    loader = torch.utils.data.DataLoader(_Rows(X_ohe, targets), batch_size=128, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    heae.fit(trainloader=loader, epochs=meta["ae_epochs"])
    return heae


class _Rows(torch.utils.data.Dataset):
    def __init__(self, X, targets):
        self.X, self.targets = X, targets

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], [t[i] for t in self.targets]


def build(job: dict, meta: dict, cache: Path | None):
    from alibi.explainers import CounterfactualRLTabular
    from alibi.explainers.backends.cfrl_tabular import get_he_preprocessor

    X = job["X_train"]
    category_map = {int(k): v for k, v in meta["category_map"].items()}
    names = meta["feature_names"]
    types = {f: int for f in meta["integer"] if names.index(f) not in category_map}
    preprocessor, inv_preprocessor = get_he_preprocessor(X, names, category_map, types)
    predictor = h_predictor(job)
    answering = ("latency_queries", "answer_threads", "batch_repeats")  # how it is timed, not what is trained
    key = hashlib.sha256(json.dumps({k: meta[k] for k in sorted(meta) if k not in answering}, sort_keys=True)
                         .encode() + X.tobytes() + b"".join(job[k].tobytes() for k in sorted(job) if k.startswith("h_"))).hexdigest()[:16]
    where = cache / f"cfrl-{key}" if cache else None
    if where is not None and (where / "seconds.json").exists():
        import os

        from alibi.saving import load_explainer

        # alibi saves whole modules, which torch >= 2.6 refuses to unpickle by default; these files are the
        # ones this script wrote itself.
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        explainer = load_explainer(where / "explainer", predictor=predictor)
        return explainer, json.loads((where / "seconds.json").read_text()), True
    start = time.perf_counter()
    heae = train_autoencoder(X, meta, preprocessor, meta["seed"])
    ae_seconds = time.perf_counter() - start
    explainer = CounterfactualRLTabular(
        predictor=predictor, encoder=heae.encoder, decoder=heae.decoder, latent_dim=15,
        encoder_preprocessor=preprocessor, decoder_inv_preprocessor=inv_preprocessor,
        coeff_sparsity=0.5, coeff_consistency=0.5, feature_names=names, category_map=category_map,
        immutable_features=meta["immutable"], ranges={k: tuple(v) for k, v in meta["ranges"].items()},
        train_steps=meta["train_steps"], batch_size=100, num_workers=0, backend="pytorch", seed=meta["seed"])
    start = time.perf_counter()
    explainer.fit(X=X)
    seconds = {"ae_seconds": ae_seconds, "fit_seconds": time.perf_counter() - start}
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        explainer.save(where / "explainer")
        (where / "seconds.json").write_text(json.dumps(seconds))  # last: marks the folder complete
    return explainer, seconds, False


def run(job_path: Path, answer_path: Path, cache: Path | None) -> None:
    job = dict(np.load(job_path))
    meta = json.loads(str(job.pop("meta")))
    torch.set_num_threads(meta.get("threads", 1))
    explainer, seconds, loaded = build(job, meta, cache)
    factuals = job["factuals"]
    target = np.array([1])
    # Answering is timed at each thread count asked for; the fastest is reported (an intra-op pool of two
    # threads stalls when the other core is busy, one thread does not: the peer gets whichever suits it).
    timings = []
    for threads in meta.get("answer_threads", [meta.get("threads", 1)]):
        torch.set_num_threads(threads)
        explainer.explain(factuals[:1], target, C=[])  # warm-up
        times = []
        for _ in range(meta.get("batch_repeats", 5)):  # median of several calls: the machine is shared
            start = time.perf_counter()
            recourses = explainer.explain(factuals, target, C=[], batch_size=len(factuals)).data["cf"]["X"]
            times.append(time.perf_counter() - start)
        latency = []
        for i in range(min(meta.get("latency_queries", 20), len(factuals))):
            t0 = time.perf_counter()
            explainer.explain(factuals[i : i + 1], target, C=[])
            latency.append(time.perf_counter() - t0)
        timings.append((float(np.median(times)), threads, recourses, latency))
    batch_seconds, threads, recourses, latency = min(timings, key=lambda x: x[0])
    import alibi

    versions = {"alibi": alibi.__version__, "torch": torch.__version__, "numpy": np.__version__}
    tmp = answer_path.with_name(answer_path.name + ".tmp.npz")
    np.savez(tmp, recourses=np.asarray(recourses, dtype=np.float64), latency_seconds=np.array(latency),
             batch_seconds=batch_seconds, answer_threads=threads,
             batch_seconds_by_threads=json.dumps({str(t[1]): t[0] for t in timings}),
             ae_seconds=seconds["ae_seconds"], fit_seconds=seconds["fit_seconds"], loaded=int(loaded),
             versions=json.dumps(versions))
    tmp.replace(answer_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("answer", type=Path)
    parser.add_argument("--cache", type=Path, default=None, help="keep the trained explainer here and reuse it")
    args = parser.parse_args()
    run(args.job, args.answer, args.cache)


if __name__ == "__main__":
    main()
