"""vimi.utils.device.resolve_device: the one place a device name is checked."""

import pytest
import torch

from vimi.errors import ConfigError
from vimi.utils.device import resolve_device


@pytest.mark.parametrize("name", [None, "auto", "AUTO", ""])
def test_auto_is_cuda_when_available_else_cpu(name):
    assert resolve_device(name).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cpu_names_and_devices_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "needle"), [("gpu", "'gpu' is not a device name"), ("meta", "not supported")]
)
def test_bad_names_raise_config_error_naming_the_input(name, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_config_error(name):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device(name)
