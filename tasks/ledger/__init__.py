"""The recourse ledger: its database, the spool for rows it could not take, and `genre ledger replay`."""
