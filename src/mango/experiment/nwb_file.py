"""The pynwb objects of ``mango export --format nwb`` (layout: see :mod:`mango.experiment.nwb`).

Kept apart from :mod:`~mango.experiment.nwb`, which reads the run, so that module imports without
pynwb and a missing install is a one-line error there.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime

import numpy as np
from hdmf.common import VectorData
from hdmf.data_utils import AbstractDataChunkIterator, DataChunk
from pynwb import NWBFile
from pynwb.base import ImageReferences, Images
from pynwb.epoch import TimeIntervals
from pynwb.image import GrayscaleImage, IndexSeries, RGBAImage, RGBImage

from .. import __version__
from .result import RunResult
from .stimuli import Picture, Trials

_DOC = {
    "trial": "trial id (in silico: the query's image id)",
    "query": "query number; -1 for images outside the search (references, re-measures)",
    "image": "image id in /stimulus/templates/stimulus_images",
    "kind": "search, reference or remeasure (the best shown again at the end)",
    "batch": "optimizer batch the trial was shown in; -1 when none (re-measures at the end)",
    "block": "block of trials sent and answered together (in silico: the batch)",
    "status": "ok / missing / late / duplicate / malformed (rig; sent while its block was open), "
              "ok / failed (in silico: a non-finite response)",
    "response": "the query's response (the objective told to the optimizer); NaN outside the search",
    "response_sd": "spread of the query's repeated presentations",
    "problem": "why a trial has no usable answer",
    "latent": "the query's latent (grid indices or box values); NaN outside the search",
    "responses": "the trial's response on each recorded channel; NaN where there is none",
}


def build_file(run: RunResult, settings: dict, start: datetime, trials: Trials, images: list[Picture],
               rig: bool) -> NWBFile:
    """The NWBFile of a run: session metadata, stimulus images, their presentation, the trials table."""
    c = run.config
    nwbfile = NWBFile(
        session_description=(f"MANGO most-exciting-input search ({'rig' if rig else 'in silico'}): optimizer "
                             f"{c.optimizer}, generator {c.generator}, model {c.model}, target {c.target}"),
        identifier=str(uuid.uuid4()), session_start_time=start, session_id=run.run_dir.name,
        experiment_description=(f"{run.n_queries} of {c.budget} queries measured"
                                + ("" if run.finished else " (unfinished)")
                                + f"; best response {run.best_response:.6g} at query {run.best_query}"),
        notes=json.dumps({"config": c.to_dict(), "settings": settings, "finished": run.finished,
                          "best_query": run.best_query, "best_response": run.best_response}, default=str),
        source_script=f"mango {__version__}", source_script_file_name="mango",
        stimulus_notes="stimulus_images: every image shown, by id; stimulus_presentation: which one, when",
        keywords=["most exciting input", "activation maximization", "gradient-free optimization", "MANGO"])
    kinds = {2: GrayscaleImage, 3: RGBImage, 4: RGBAImage}
    pictures = [kinds[2 if len(p.shape) == 2 else p.shape[2]](name=p.name, description=p.description,
                                                                data=_Lazy(p)) for p in images]
    stim = Images(name="stimulus_images", images=pictures, description="every image shown, by image id",
                  order_of_images=ImageReferences(name="order_of_images", data=pictures))
    nwbfile.add_stimulus_template(stim)
    t = trials.table
    shown = t["image"].map({p.name: i for i, p in enumerate(images)}).to_numpy(dtype=float)
    ok = np.isfinite(shown)
    nwbfile.add_stimulus(IndexSeries(
        name="stimulus_presentation", data=shown[ok].astype(np.uint32), indexed_images=stim, unit="N/A",
        timestamps=t["start_time"].to_numpy(dtype=float)[ok],
        description="index in stimulus_images/order_of_images of the image each trial showed, at its start"))
    columns = [VectorData(name=k, data=t[k].to_numpy() if t[k].dtype != object else t[k].tolist(),
                          description=_DOC.get(k, "start or stop of the trial, seconds from the session start"))
               for k in t.columns]
    columns.append(VectorData(name="latent", data=trials.latent, description=_DOC["latent"]))
    if trials.responses is not None:
        columns.append(VectorData(name="responses", data=trials.responses, description=_DOC["responses"]))
    nwbfile.trials = TimeIntervals(name="trials", description=f"one row per presentation; times: {trials.clock}",
                                   columns=columns)
    return nwbfile


class _Lazy(AbstractDataChunkIterator):
    """One image's pixels, made when the writer reaches that image (so memory holds a chunk, not the run)."""

    def __init__(self, picture: Picture) -> None:
        self.picture, self._done = picture, False

    def __iter__(self) -> _Lazy:
        return self

    def __next__(self) -> DataChunk:
        if self._done:
            raise StopIteration
        self._done = True
        data = np.asarray(self.picture.pixels(), dtype=self.picture.dtype)
        return DataChunk(data=data, selection=tuple(slice(0, n) for n in data.shape))

    def recommended_chunk_shape(self) -> None:
        return None

    def recommended_data_shape(self) -> tuple[int, ...]:
        return self.picture.shape

    @property
    def dtype(self) -> np.dtype:
        return self.picture.dtype

    @property
    def maxshape(self) -> tuple[int, ...]:
        return self.picture.shape
