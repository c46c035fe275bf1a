"""Subcommands of the `anyecg` CLI; see `anyecg_hf.cli.COMMANDS`."""
