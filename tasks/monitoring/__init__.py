"""Monitoring a new champion: claim the version, build the Evidently reports, log them."""
