"""One module per CLI subcommand. Each exposes `register(parser)` and `run(args) -> int`."""
