"""Serving: `mlflow models serve` on the champion pair, the served pyfunc, batch recourse and `genre recourse`."""
