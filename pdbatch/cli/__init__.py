"""The `pdbatch` command line: argument wiring (commands), request files (file), housekeeping (jobs), tables (table)."""

from .commands import main

__all__ = ["main"]
