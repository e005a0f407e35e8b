"""The `hasthook` sub-commands, one module each (see hasthook.cli.COMMANDS)."""
