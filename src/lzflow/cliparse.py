"""Argument-parser building blocks of the ``lzflow`` console script (:mod:`lzflow.cli`): a
subcommand bound to its function, with its help taken from the function's docstring, and the
option groups the stages share."""

from __future__ import annotations

import argparse
import inspect
from typing import Any, Callable

__all__ = ["stage", "required", "lists", "config_or_spec", "register_all"]


def stage(sub: Any, name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """One subcommand bound to ``func``: its help line is the first line of ``func``'s docstring
    (without the full stop), its description the rest."""
    first, _, rest = inspect.cleandoc(func.__doc__ or "").partition("\n")
    parser = sub.add_parser(name, help=first.rstrip("."), description=" ".join(rest.split()))
    parser.set_defaults(func=func)
    return parser


def required(parser: argparse.ArgumentParser, **options: str) -> None:
    """Required options, ``name="help"`` each (``errors_out`` → ``--errors-out``)."""
    for name, text in options.items():
        parser.add_argument("--" + name.replace("_", "-"), required=True, help=text)


def lists(parser: argparse.ArgumentParser, required: bool, **options: str) -> None:
    """Options taking one or more files (``required``) or any number of them, ``name="help"`` each."""
    for name, text in options.items():
        if required:
            parser.add_argument("--" + name.replace("_", "-"), nargs="+", required=True, help=text)
        else:
            parser.add_argument("--" + name.replace("_", "-"), nargs="*", default=[], help=text)


def config_or_spec(parser: argparse.ArgumentParser, spec_help: str) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="analysis config YAML (e.g. config/config.yaml)")
    group.add_argument("--spec", help=spec_help)


def register_all(sub: Any, *modules: Any) -> None:
    """Add the subcommands of each module (its ``register(sub)``) to the console script, in order."""
    for module in modules:
        module.register(sub)
