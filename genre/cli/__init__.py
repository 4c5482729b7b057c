"""The `genre` command: `main` dispatches each subcommand to the module that owns it."""
