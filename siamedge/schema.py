"""`siamedge schema [NAME]`: the JSON Schemas (draft 2020-12) of the MQTT payloads, as shipped.

Reads the files in siamedge/schemas/ and prints them; never validates anything (the schemas are
for clients and for the tests, and the daemon's own parser stays the one that decides).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from typing import Any

SCHEMA_PACKAGE = "siamedge"
SCHEMA_FOLDER = "schemas"
SCHEMA_SUFFIX = ".json"


def schema_names() -> tuple[str, ...]:
    """The shipped schemas' names, sorted: `ack`, `error`, `error-summary`, `results`, ..."""
    folder = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FOLDER)
    return tuple(
        sorted(
            entry.name.removesuffix(SCHEMA_SUFFIX)
            for entry in folder.iterdir()
            if entry.name.endswith(SCHEMA_SUFFIX)
        )
    )


def schema_text(name: str) -> str:
    """The JSON text of schema `name`; KeyError when there is none by that name."""
    if name not in schema_names():
        raise KeyError(name)
    path = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FOLDER).joinpath(name + SCHEMA_SUFFIX)
    return path.read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """Schema `name` as a JSON object."""
    document: dict[str, Any] = json.loads(schema_text(name))
    return document


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """NAME, optional."""
    parser.add_argument(
        "name",
        nargs="?",
        choices=schema_names(),
        metavar="NAME",
        help=f"the schema to print ({', '.join(schema_names())}); without it, the list",
    )


def run(args: argparse.Namespace) -> int:
    """Print schema NAME, or one line per schema: its name and title."""
    if args.name is None:
        for name in schema_names():
            sys.stdout.write(f"{name:<14} {load_schema(name).get('title', '')}\n")
    else:
        sys.stdout.write(schema_text(args.name))
    return 0
