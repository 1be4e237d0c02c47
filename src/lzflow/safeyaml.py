"""Reading configuration YAML defensively: bounded size, depth and alias expansion, no duplicate keys.

Configuration files come from users (and, on shared clusters, from anybody who can write a file
that a user passes on). :func:`read_yaml` turns every way such a file can be broken or hostile
into one :class:`~lzflow.exceptions.ConfigError` line naming the file (and the line where known),
before anything else reads it:

* more than :data:`MAX_FILE_BYTES` bytes, a NUL byte (a binary file) or text that is not UTF-8;
* malformed YAML, or a tag outside YAML's safe core schema (PyYAML's ``SafeLoader``);
* a mapping key given twice (YAML would silently keep the last one: a config whose
  ``drift_field`` appears twice would run with whichever came last);
* nesting deeper than :data:`MAX_DEPTH` (PyYAML's composer recurses: thousands of levels end in
  a ``RecursionError``);
* more than :data:`MAX_NODES` nodes once aliases are expanded (a "billion laughs" alias bomb
  is a few hundred bytes that expand to 10⁹ nodes; PyYAML shares aliased objects, but every
  later deep copy, merge or schema walk expands them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigError, one_line

__all__ = ["read_yaml", "parse_yaml", "MAX_FILE_BYTES", "MAX_DEPTH", "MAX_NODES"]

#: Largest configuration file read (the default config is ~3 kB).
MAX_FILE_BYTES = 1 << 20
#: Deepest nesting of mappings/sequences (the default config nests 4 levels).
MAX_DEPTH = 32
#: Most nodes after alias expansion (the default config has ~250).
MAX_NODES = 100_000


class _Refused(Exception):
    """Raised inside the loader; turned into a ConfigError with the file name."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that bounds nesting depth and refuses duplicate mapping keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"nesting deeper than {MAX_DEPTH} levels; expected a configuration of a few levels",
                               mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *anchor' merge keys may be overridden by explicit keys
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise _Refused(f"a mapping key is a {type(key).__name__}; expected a plain key",
                                   key_node.start_mark.line + 1) from None
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _Refused(f"duplicate key {key!r} (first at line {seen[key]}); expected each key once", line)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node) -> int:
    """Number of nodes of the document with every alias expanded (memoised: linear in the
    distinct nodes, so a bomb is measured without being expanded)."""
    sizes: dict[int, int] = {}
    # iterative post-order walk: aliases make the node graph a DAG, recursion depth is bounded anyway
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                return sizes[id(node)]
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def parse_yaml(text: str, name: str = "<string>") -> Any:
    """Parse YAML text with the bounds of :func:`read_yaml` (``name`` is used in errors)."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > MAX_NODES:
            raise _Refused(f"expands to more than {MAX_NODES:,} nodes through aliases (an alias bomb?); "
                           f"expected a plain configuration")
        return loader.construct_document(node)
    except _Refused as err:
        where = f" line {err.line}" if err.line else ""
        raise ConfigError(f"{name}{where}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        raise ConfigError(one_line(f"{name}{where}: not valid YAML ({problem})")) from None
    except RecursionError:  # a structure deep enough to exhaust the stack before the depth check
        raise ConfigError(f"{name}: nesting too deep; expected a configuration of a few levels") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """Read and parse one YAML file with the bounds listed in the module docstring."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "file not found"
        raise ConfigError(f"{path}: {what}; expected a YAML file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes; expected a configuration file under {MAX_FILE_BYTES:,} bytes")
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"{path}: binary file (NUL byte at offset {nul}); expected YAML text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                          f"expected YAML text in UTF-8") from None
    return parse_yaml(text, str(path))
