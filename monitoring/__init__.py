"""Evidently 0.7 monitoring of the champion models: data drift, prediction drift and recourse reports."""
