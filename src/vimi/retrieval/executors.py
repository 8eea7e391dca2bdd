"""Where retrieval jobs run their tasks: in this process, or as Ray tasks (a local ray.init() or a cluster)."""

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from tqdm.auto import tqdm

from vimi.errors import ConfigError

log = logging.getLogger(__name__)

ShardFn = Callable  # process_shard(job, shard, index) -> done record


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


def run_local(job, shards: list[int], process: ShardFn, progress: bool = True) -> list[dict]:
    """Shards one after another; each shard's queries go to bm25s in one batch over `cfg.threads` threads."""
    from vimi.retrieval.sharded import ShardedIndex

    if not shards:
        return []
    index = ShardedIndex(job.index, threads=job.cfg.threads)
    return [
        process(job, s, index) for s in tqdm(shards, desc="build-prompts", unit="shard", disable=not progress)
    ]


def _ray_shard(shard: int, job, process: ShardFn) -> dict:
    """One Ray task: the index is opened once per worker process (memory-mapped) and reused."""
    from vimi.retrieval.retrieve import cached_index

    index = cached_index(job.index)
    index.threads = 1  # one CPU per task; Ray parallelises across tasks
    return process(job, shard, index)


def run_ray(job, shards: list[int], process: ShardFn, address: str = "") -> list[dict]:
    """Shards as Ray tasks; results are collected in shard order."""
    return map_tasks(_ray_shard, shards, (job, process), executor="ray", address=address)
