"""Ingest: incoming batches checked against the contract, the versioned training store, data-set specs."""
