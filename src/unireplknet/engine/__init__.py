"""The training engine: one loop (:func:`fit`) for every task, its options, the :class:`Task` contract, run
checkpoints, distribution, logging, and the flag vocabulary of every ``*-train`` command (:mod:`.flags`).

The engine holds no task: the tasks live in :mod:`unireplknet.tasks` (images in :mod:`unireplknet.tasks.image`).
Names are imported on first use, so that the command line can read :mod:`.flags` without loading torch.
"""
import importlib

#: Public name -> the submodule that defines it.
_EXPORTS = {
    **dict.fromkeys(("CHECKPOINT_FORMAT", "CheckpointWriteError", "atomic_torch_save", "atomic_write_bytes",
                     "get_rng_state", "load_training_checkpoint", "read_run_metadata", "set_rng_state"),
                    "checkpointing"),
    **dict.fromkeys(("EngineConfig", "plain"), "config"),
    **dict.fromkeys(("DistInfo", "init_distributed"), "distributed"),
    **dict.fromkeys(("EpochEnd", "RunFolderError", "TrainResult", "amp_dtype_of", "build_optimizer",
                     "build_scheduler", "fit", "make_eval_loader"), "loop"),
    **dict.fromkeys(("ShardedBatchSampler", "ShardedEvalSampler"), "samplers"),
    **dict.fromkeys(("Batch", "StepContext", "StepOutput", "Task", "TaskData", "collate_samples"), "task"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unireplknet.engine' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
