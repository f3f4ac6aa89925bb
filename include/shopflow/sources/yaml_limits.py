"""YAML read as untrusted data: PyYAML's safe loader (plain values only, no Python tags) with bounds on what the
document may expand to.

Anchors and aliases are allowed (`&columns` ... `*columns` saves repeating a list), but an alias counts as the whole
node it repeats: the document as expanded may hold at most MAX_EXPANDED_NODES values, and nest at most MAX_DEPTH
levels. PyYAML shares an aliased node rather than copying it, so a "billion laughs" bomb is small while it is
parsed and huge only when something walks it (pydantic's validation passed 2 GB). The bounds are checked on the
parser's events before anything is built: a bomb is refused after a few hundred values are read, and an alias to a
node that contains it (a recursive structure) is refused too. The events and the document come from libyaml when
PyYAML has it (the pure-Python parser takes a minute on some 1 MiB files).

`load_bounded_yaml_with_lines` also says where each value is written: a map from key paths (`("orders", "files", 0,
"name")`) to the 1-based line of the node (a mapping entry's key, a list item), so that an error can name the line.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_EXPANDED_NODES = 100_000  # the shipped sources file expands to about 1,000
MAX_DEPTH = 64
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlDocumentError(ValueError):
    """The text is not one YAML document within the bounds; the message says where and why."""


def load_bounded_yaml_with_lines(text: str) -> tuple[Any, dict[tuple, int]]:
    """The YAML document in `text` as plain Python values, and a map from each value's key path (a tuple of mapping
    keys and list indexes, `()` the document) to the 1-based line where it is written; YamlDocumentError when it is
    not valid YAML or passes the bounds."""
    try:
        check_bounds(text)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            data = loader.construct_document(node)  # merges `<<` keys into the node tree as it goes
            lines: dict[tuple, int] = {(): node.start_mark.line + 1}
            _record_lines(loader, node, (), lines, set())
            return data, lines
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise YamlDocumentError(f"not valid YAML ({exc})") from None


def _record_lines(loader, node: yaml.Node, path: tuple, lines: dict[tuple, int], open_nodes: set[int]) -> None:
    """Add the line of every value under `node` (at `path`) to `lines`: a mapping entry at its key's line, a list
    item at its own. An alias is walked as what it repeats (check_bounds has bounded that)."""
    if id(node) in open_nodes:  # a recursive alias (check_bounds refuses it first)
        return
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a collection as a key: the loader refuses it (unhashable)
            key = loader.construct_object(key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _record_lines(loader, value_node, (*path, key), lines, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(loader, item, (*path, index), lines, open_nodes)
    open_nodes.discard(id(node))


def check_bounds(text: str) -> None:
    """YamlDocumentError when the document, its aliases expanded, passes MAX_EXPANDED_NODES values or MAX_DEPTH
    levels, or holds a recursive alias; yaml.YAMLError when it is not YAML."""
    expanded: dict[str, int] = {}  # anchor -> the values of its node, aliases expanded
    open_collections: list[list] = []  # [values so far, anchor] of each collection being read, outermost first
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_collections) >= MAX_DEPTH:
                raise YamlDocumentError(f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            open_collections.append([1, event.anchor])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_collections.pop()
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in expanded:
                size, anchor = expanded[event.anchor], None
            elif any(event.anchor == collection[1] for collection in open_collections):
                raise YamlDocumentError(f"line {event.start_mark.line + 1}: the alias *{event.anchor} refers to a "
                                        "node that contains it (a recursive structure)")
            else:
                continue  # an undefined alias: the loader names it
        else:
            continue  # stream and document events
        if anchor is not None:
            expanded[anchor] = size
        if open_collections:
            open_collections[-1][0] += size
            size = open_collections[-1][0]
        if size > MAX_EXPANDED_NODES:
            raise YamlDocumentError(
                f"line {event.start_mark.line + 1}: expands to more than {MAX_EXPANDED_NODES:,} values (an alias "
                "counted as what it repeats): an alias bomb, or a file far larger than a sources file")
