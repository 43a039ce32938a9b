"""`python -m parallelrun`: the `parallelrun` command."""

from .cli import command

command()
