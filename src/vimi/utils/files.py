"""Reading the small JSON files that mark and describe vimi folders, and data files of installed packages."""

import importlib.util
import json
from pathlib import Path
from typing import Any

from vimi.errors import ConfigError, DataError, VimiError


def read_json(
    path: str | Path, what: str, expect_format: str | None = None, error: type[VimiError] = DataError
) -> dict[str, Any]:
    """The JSON object in `path`; `error` (DataError) naming the file and `what` it should be if missing or corrupt."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: not found; expected {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: corrupt {what} ({err}); rebuild it") from None
    if not isinstance(data, dict):
        raise error(f"{path}: corrupt {what} (a JSON {type(data).__name__}, not an object); rebuild it")
    if expect_format is not None and data.get("format") != expect_format:
        raise error(f"{path}: not a {what} (format={data.get('format')!r}, expected {expect_format!r})")
    return data


def package_file(package: str, relpath: str, hint: str) -> Path:
    """The file `relpath` inside the installed `package` (located without importing it); a glob pattern
    matches its first file in sorted order. ConfigError naming the package and `hint` (how to install it)."""
    spec = importlib.util.find_spec(package)  # finds the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {package} package is not installed: {hint}")
    folder = Path(spec.submodule_search_locations[0])
    matches = sorted(folder.glob(relpath)) if any(c in relpath for c in "*?[") else [folder / relpath]
    if not matches or not matches[0].exists():
        raise ConfigError(
            f"{folder / relpath}: missing from the installed {package} package (incomplete?): {hint}"
        )
    return matches[0]


def file_stamp(path: str | Path) -> dict[str, Any]:
    """Path, size and modification time: what tells a resumed job that its input file is the one it began with."""
    stat = Path(path).stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
