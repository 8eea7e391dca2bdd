"""Errors a user can cause. Each names the input and what to do; the CLI turns them into exit code 2."""


class VimiError(Exception):
    """Base class of every error caused by user input (a file, a prompt, a config)."""


class ConfigError(VimiError):
    """A config file or override is wrong: an unknown key, a wrong type, a missing base file."""


class MediaError(VimiError):
    """A video or image file is missing, truncated, corrupt or in an unsupported format."""


class PromptError(VimiError):
    """A multimodal prompt is malformed: image slots vs images, empty text, unreadable images."""


class DataError(VimiError):
    """A dataset manifest or shard is missing, malformed or inconsistent."""


class CheckpointError(VimiError):
    """A checkpoint is missing, incomplete or does not match the config."""
