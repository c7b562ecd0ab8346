"""CLI subcommands, one module each (see arcface_viz.cli)."""
