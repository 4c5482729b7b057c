"""`genre train --dataset D`: train (or load) the paper's protocol set-up and GenRe's generator, cached
under `GENRE_HOME`, and print where it lives and how long training took."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

from genre.evaluation.genre_methods import generator_dir, load_or_train
from genre.evaluation.protocol import load_protocol
from genre.core.train_generator import recipe


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="adult, compas, heloc, or a spec file (.yaml/.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the protocol models and of the generator")
    parser.add_argument("--epochs", type=int, help="override the recipe's maximum number of epochs")


def main(args: argparse.Namespace) -> int:
    setup = load_protocol(args.dataset, seed=args.seed, progress=True)
    config, train = recipe(setup.spec.name, setup.spec.d, rows=len(setup.X_train))
    train = replace(train, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    genre = load_or_train(setup, config=config, train=train, progress=True)
    history = genre.history
    print(json.dumps({
        "dataset": setup.spec.name,
        "directory": str(generator_dir(setup, config, train)),
        "epochs_run": len(history["val_loss"]),
        "best_epoch": history["best_epoch"],
        "best_val_loss": min(history["val_loss"]),
        "train_seconds": round(history["train_seconds"], 1),
    }, indent=1))
    return 0
