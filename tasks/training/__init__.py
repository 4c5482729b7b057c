"""Retrain: fit h and the generator on a store snapshot, gate them, log and register the pair in MLflow."""
