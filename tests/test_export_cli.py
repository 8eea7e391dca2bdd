"""`vimi export`: a checkpoint as a pipeline folder, in another dtype and with other sampling defaults."""

import json

import torch
from safetensors import safe_open

from vimi.cli import main
from vimi.pipeline import VimiPipeline


def test_export_casts_the_weights_and_sets_sampling_defaults(tiny_checkpoint, tmp_path):
    out = tmp_path / "exported"
    args = ["export", str(tiny_checkpoint), str(out), "--dtype", "float16"]
    assert main([*args, "--set", "sample.sampler=euler", "--set", "sample.num_inference_steps=5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["COMPLETE", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert (config["sample"]["sampler"], config["sample"]["num_inference_steps"]) == ("euler", 5)
    source = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model"] == source["model"] and config["diffusion"] == source["diffusion"]
    with safe_open(out / "model.safetensors", framework="pt") as f:
        assert {f.get_slice(name).get_dtype() for name in f.keys()} == {"F16"}  # noqa: SIM118
    exported, original = (VimiPipeline.from_pretrained(p, device="cpu") for p in (out, tiny_checkpoint))
    for (name, a), b in zip(exported.model.named_parameters(), original.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3, msg=name)


def test_export_refuses_what_it_cannot_change_with_one_line(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(tiny_checkpoint), str(out), "--set", "train.lr=0.1"]) == 2
    assert main(["export", str(tiny_checkpoint), str(out), "--set", "sample.samplr=euler"]) == 2
    assert main(["export", str(tmp_path / "nowhere"), str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and "sample.*" in errors[0] and "samplr" in errors[1] and "not found" in errors[2]
    assert not out.exists()
