"""Where retrieval jobs run their tasks: in this process, or as Ray tasks (a local ray.init() or a cluster).

Generic over the task: jobs (index_build, build_prompts, corpus) hand in their functions, and this module
imports nothing else of vimi.retrieval.
"""

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from tqdm.auto import tqdm

from vimi.errors import ConfigError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(address: str = "") -> Iterator:
    """The `ray` module, connected to `address` (empty: a local Ray started here and stopped after)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("retrieval.executor=ray needs Ray: pip install 'vimi[ray]' (ray>=2.9)") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def map_tasks(
    fn: Callable,
    items: Sequence,
    shared: tuple = (),
    executor: str = "local",
    address: str = "",
    progress: bool = True,
    desc: str = "",
) -> list:
    """[fn(item, *shared) for item in items], in this process or as one Ray task per item (results in
    item order). Under Ray the `shared` objects go to the object store once, not once per task, and a
    task that dies is retried, so `fn` must be safe to run twice (write its files atomically)."""
    if executor == "local" or not items:
        return [fn(item, *shared) for item in tqdm(items, desc=desc, unit="shard", disable=not progress)]
    with ray_session(address) as ray:
        shared_refs = [ray.put(value) for value in shared]
        task = ray.remote(num_cpus=1, max_retries=2)(fn)
        return ray.get([task.remote(item, *shared_refs) for item in items])
