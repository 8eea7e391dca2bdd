"""`vimi world`: flags, config overrides, summary table, exit codes."""

from vimi.cli import main
from vimi.data.manifest import count_rows
from vimi.data.world import load_world


def test_vimi_world_builds_with_overrides_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "w"
    argv = [
        "world",
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--seed",
        "5",
        "--set",
        "world.num_train_videos=5",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "memory pairs" in printed and "tiny" in printed
    world = load_world(out)
    assert world.config.seed == 5 and count_rows(world.video_dir("train")) == 5
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_bad_world_config_is_a_user_error(tmp_path, capsys):
    assert main(["world", "--out", str(tmp_path / "w"), "--set", "world.height=4", "--preset", "tiny"]) == 2
    assert "world frames must be at least 8x8" in capsys.readouterr().err
