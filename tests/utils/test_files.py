"""vimi.utils.files: JSON index reading and data files of installed packages, with errors naming the file."""

import json

import pytest

from vimi.errors import ConfigError, DataError
from vimi.utils.files import package_file, read_json


def test_read_json_returns_the_object_and_checks_the_format(tmp_path):
    path = tmp_path / "index.json"
    path.write_text(json.dumps({"format": "x", "rows": 3}))
    assert read_json(path, "x index", expect_format="x") == {"format": "x", "rows": 3}
    with pytest.raises(DataError, match=r"index\.json: not a y index \(format='x'"):
        read_json(path, "y index", expect_format="y")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"format": "x", "sha', "corrupt x index"),
        (b"\xff\xfe\x00", "corrupt x index"),
        (b"[1, 2]", "JSON list"),
    ],
)
def test_corrupt_json_is_a_data_error_naming_the_file(tmp_path, content, needle):
    path = tmp_path / "index.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=needle) as info:
        read_json(path, "x index", expect_format="x")
    assert str(path) in str(info.value)


def test_missing_json_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.json: not found; expected x index"):
        read_json(tmp_path / "nope.json", "x index")


def test_package_file_finds_files_and_globs_without_importing():
    assert package_file("vimi", "errors.py", "reinstall vimi").name == "errors.py"
    assert package_file("vimi", "utils/*.py", "reinstall vimi").suffix == ".py"


def test_package_file_names_the_package_and_the_fix():
    with pytest.raises(ConfigError, match="no_such_pkg_xyz package is not installed: pip install it"):
        package_file("no_such_pkg_xyz", "x.bin", "pip install it")
    with pytest.raises(ConfigError, match=r"missing\.bin: missing from the installed vimi package"):
        package_file("vimi", "missing.bin", "reinstall vimi")
