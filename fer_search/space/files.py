"""Space files: the shipped ones, resolving a name or path, reading the YAML safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fer_search.errors import UserError, did_you_mean
from fer_search.space.parse import load_space_dict
from fer_search.space.schema import SearchSpace

__all__ = ["load_space", "resolve_space_path", "shipped_dir", "shipped_spaces"]

_PACKAGE = Path(__file__).resolve().parents[1]  # fer_search/


def shipped_dir() -> Path:
    """The shipped spaces: <checkout>/search_spaces, or the copy packaged as fer_search/_spaces."""
    root = _PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "search_spaces").is_dir():
        return root / "search_spaces"
    return _PACKAGE / "_spaces"


def shipped_spaces() -> list[str]:
    directory = shipped_dir()
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def resolve_space_path(path_or_name: str) -> Path:
    """An existing file is itself; else a shipped space by name ('densenet', 'densenet.yaml')."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UserError(f"search space {str(path_or_name)!r} is a directory, not a YAML file")
    stem = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    shipped = shipped_spaces()
    if path.parent == Path(".") and stem in shipped:
        return shipped_dir() / f"{stem}.yaml"
    raise UserError(
        f"search space {str(path_or_name)!r} is neither a file nor a shipped space "
        f"(shipped: {', '.join(shipped) or 'none'}){did_you_mean(stem, shipped)}"
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: a second `lr:` would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The file's YAML as plain data; a one-line UserError with line and column if it is bad."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read search space: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise UserError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None


def load_space(path_or_name: str) -> SearchSpace:
    """Read, parse and validate a space file (or a shipped space by name)."""
    path = resolve_space_path(path_or_name)
    data = read_yaml(path)
    if data is None:
        raise UserError(f"{path}: search space file is empty; it needs at least `params:`")
    return load_space_dict(data, source=str(path))
