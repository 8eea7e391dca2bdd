"""The config system: base inheritance, overrides, and errors that name the key and the file."""

import pytest
import yaml

from vimi.config import VimiConfig, from_dict, load_config, save_config, to_dict
from vimi.errors import ConfigError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_round_trip_through_yaml(tmp_path):
    cfg = load_config()
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg
    assert isinstance(cfg.train.betas, tuple)


def test_base_inheritance_overrides_only_what_changes(tmp_path):
    write(tmp_path / "base.yaml", {"train": {"lr": 1e-3, "steps": 7}, "model": {"encoder": {"dim": 64}}})
    write(tmp_path / "stage.yaml", {"base": "base.yaml", "train": {"stage": "instruct", "steps": 9}})
    cfg = load_config(tmp_path / "stage.yaml")
    assert cfg.train.lr == 1e-3  # inherited
    assert cfg.train.steps == 9  # overridden
    assert cfg.train.stage == "instruct"
    assert cfg.model.encoder.dim == 64  # nested sections merge, not replace
    assert cfg.model.encoder.depth == VimiConfig().model.encoder.depth


def test_set_overrides_win_and_are_typed(tmp_path):
    path = write(tmp_path / "c.yaml", {"train": {"lr": 1e-3}})
    cfg = load_config(path, ["train.lr=0.5", "sample.sampler=euler", "train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 0.5
    assert cfg.sample.sampler == "euler"
    assert cfg.train.betas == (0.8, 0.9)
    assert load_config(None, ["train.lr=3e-3"]).train.lr == 3e-3  # YAML 1.1 reads 3e-3 as a string


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path / "bad.yaml", {"train": {"learning_rate": 1e-3}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.learning_rate" in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    write(tmp_path / "base.yaml", {"model": {"backbone": {"sise": "S"}}})
    path = write(tmp_path / "child.yaml", {"base": "base.yaml"})
    with pytest.raises(ConfigError, match=r"model\.backbone\.sise.*did you mean 'size'"):
        load_config(path)


def test_wrong_type_is_rejected(tmp_path):
    path = write(tmp_path / "c.yaml", {"train": {"steps": "many"}})
    with pytest.raises(ConfigError, match=r"c\.yaml.*train\.steps.*integer"):
        load_config(path)
    with pytest.raises(ConfigError, match="true or false"):
        load_config(None, ["model.text_only=3"])
    with pytest.raises(ConfigError, match="one of"):
        load_config(None, ["sample.sampler=rk4"])


def test_bad_override_names_the_override():
    with pytest.raises(ConfigError, match=r"--set train\.nope=1"):
        load_config(None, ["train.nope=1"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(None, ["train.lr"])


def test_missing_base_and_cycles(tmp_path):
    path = write(tmp_path / "c.yaml", {"base": "missing.yaml"})
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_config(path)
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_int_accepted_where_float_expected():
    cfg = from_dict(VimiConfig, {"train": {"lr": 1}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert to_dict(cfg)["train"]["lr"] == 1.0
