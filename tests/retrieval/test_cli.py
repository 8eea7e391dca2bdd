import json

import pytest

from vimi.cli import main
from vimi.data.manifest import count_rows


def test_index_and_build_prompts_commands(tmp_path, memory, videos, capsys):
    index_args = ["index", "--corpus", str(memory), "--out", str(tmp_path / "index"), "--shards", "2"]
    assert main([*index_args, "--executor", "local"]) == 0
    meta = json.loads((tmp_path / "index" / "index.json").read_text())
    assert meta["backend"] == "bm25" and len(meta["shards"]) == 2 and meta["rows"] == 42
    args = [
        "build-prompts",
        "--videos",
        str(videos),
        "--index",
        str(tmp_path / "index"),
        "--k",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        "--set",
        "retrieval.shard_size=5",
    ]
    assert main(args) == 0
    assert count_rows(tmp_path / "out") == 8
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["k"] == 3
    assert main(args) == 0  # re-running a finished job is a no-op that rewrites the same index


def test_user_errors_exit_2_naming_the_input(tmp_path, memory, capsys):
    assert main(["index", "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "index")]) == 2
    assert "nope" in capsys.readouterr().err
    args = [
        "build-prompts",
        "--videos",
        str(memory),
        "--index",
        str(tmp_path / "index"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert "lacks column(s) ['caption', 'video']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and exit 2
        main(["index", "--corpus", str(memory), "--out", str(tmp_path / "i"), "--executor", "dask"])
    assert exit_info.value.code == 2 and "invalid choice: 'dask'" in capsys.readouterr().err
