"""The checkpoint of a training run: a model file whose configuration holds
the run's progress under ``"fit"``: its plan (the options a resumed run must
share), how many epochs are done, where its history starts, a fingerprint of
its data, and the books of its step strategies (their arrays beside the
layers'). The weights, momentum, random state and step counter are in every
model file, so a run resumed from a checkpoint continues as if it had not
stopped. The sequential loop and the WASAP server keep theirs with this
class; a new run never replaces another run's file.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from .. import archive, labels
from ..errors import CheckpointError, InvalidInputError
from ..files import atomic_write, check_writable

log = logging.getLogger("sparse_mlp")
BOOKS = "recycling."  # the prefix of the strategies' arrays in a checkpoint
CALLBACKS = "callback."  # the prefix of the callbacks' arrays


def _same(saved: Any, wanted: Any) -> bool:
    """Equal settings; in mappings (a strategy's encoding) a key one side lacks
    equals None on the other: a setting added later with a None default (as
    SET's ``layers``) does not set a checkpoint written before it apart."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        return all(_same(saved.get(k), wanted.get(k)) for k in set(saved) | set(wanted))
    return bool(saved == wanted)


def differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings of a resumed run that differ from the saved run's."""
    return [f"{k}: saved {saved.get(k)!r}, given {wanted.get(k)!r}"
            for k in sorted(set(saved) | set(wanted)) if not _same(saved.get(k), wanted.get(k))]


class RunCheckpoint:
    """The checkpoint file at ``path`` of a run with ``plan``."""

    def __init__(self, path: str, plan: dict[str, Any], resume: bool, overwrite: bool) -> None:
        self.path, self.plan, self.resume = path, plan, resume
        check_writable(path, "the checkpoint")
        self.exists = os.path.exists(path)
        if self.exists and not resume and not overwrite:
            raise InvalidInputError(
                f"{path} already exists ({archive.describe_run(path)}); a new run does not replace "
                "it: pass resume=True to continue the run saved there, overwrite=True to replace it, "
                "or another checkpoint path")

    def saved_classes(self, n_outputs: int) -> np.ndarray | None:
        """The classes of the run to resume (the labels of this run must be
        read as its were), or None when there is none to resume."""
        if not (self.resume and self.exists):
            return None
        meta = archive.read_meta(self.path)
        classes = meta.get("config", {}).get("classes") if isinstance(meta.get("config"), dict) else None
        try:
            return labels.from_json(classes, meta["sizes"][-1])
        except InvalidInputError as e:
            raise CheckpointError(f"{self.path}: {e}") from None

    def load(self, fingerprint: str) -> tuple[archive.Saved, dict[str, Any]] | None:
        """The saved run when this one resumes it: its model and its progress,
        after checking that it is a run of the same plan on the same data
        (``fingerprint``). None when there is nothing to resume."""
        if not (self.resume and self.exists):
            if self.resume:
                log.info("no checkpoint at %s yet; starting a new run", self.path)
            return None
        saved = archive.read(self.path, self.path, extra_prefix=(BOOKS, CALLBACKS))
        progress = saved.config.get("fit")
        if not isinstance(progress, dict) or "done" not in progress:
            raise CheckpointError(f"{self.path} is a model file but not a checkpoint of a training run")
        diff = differences(progress.get("plan", {}), self.plan)
        if diff:
            raise InvalidInputError(f"{self.path} holds a run with other options; resume it with the "
                                    f"same ones ({'; '.join(diff)})")
        if progress.get("data") != fingerprint:
            raise InvalidInputError(f"{self.path} holds a run on other training data; resume it "
                                    "with the same X and y")
        log.info("resuming the run saved in %s after epoch %d of %d", self.path, progress["done"],
                 progress["plan"]["epochs"])
        return saved, progress

    def write(self, model: Any, progress: dict[str, Any], books: list[dict[str, Any]] | None = None,
              arrays: dict[str, np.ndarray] | None = None) -> None:
        """Writes the model with the run's ``progress`` (and the step
        strategies' ``books`` and ``arrays``), atomically: a failure leaves
        the previous checkpoint as it was."""
        state = dict(progress, plan=self.plan)
        if books is not None:
            state["recycling"] = books
        config = dict(model._config, fit=state)
        try:
            atomic_write(self.path, lambda f: archive.write(f, model._net, config, model.history,
                                                            model.epochs_trained, arrays,
                                                            archive.format_of(self.path)))
        except OSError as e:
            e.add_note(f"sparse_mlp: writing the checkpoint {self.path} failed after epoch "
                       f"{progress['done']}; the file there is as it was before")
            raise
