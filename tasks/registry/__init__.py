"""The MLflow model registry: the classifier/generator pair, its aliases, promotion and reconciliation."""
