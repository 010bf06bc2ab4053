"""A rig in the loop, against an in-process rig that drops, duplicates and garbles answers.

Checks the bookkeeping the transports do not: every presentation gets exactly one status, no
response is attached to the wrong image, a candidate never answered is left out (never told as a
value), and a run stopped mid-block resumes, matching the answers that arrive after the restart.
"""
from __future__ import annotations

import random
import time

import numpy as np
import pandas as pd
import pytest
import torch

import mango
from mango import MangoError
from mango.experiment.store import RunStore
from mango.rig.protocol import Answer, Transport, Trial
from mango.rig.record import unpng
from mango.rig.target import RigTarget

CHANNELS = 4


def truth(image: np.ndarray) -> np.ndarray:
    """The simulated neuron: channel c answers the mean brightness of the c-th horizontal band."""
    bands = np.array_split(image.astype(np.float64) / 255.0, CHANNELS, axis=0)
    return np.array([b.mean() for b in bands])


class FakeRig(Transport):
    """Answers every trial from :func:`truth`, with seeded drops, duplicates and malformed answers."""

    def __init__(self, drop=0.0, duplicate=0.0, malformed=0.0, seed=0, never=(), stop_after=None, remember=None):
        self.rng, self.channels = random.Random(seed), CHANNELS
        self.drop, self.duplicate, self.malformed, self.never = drop, duplicate, malformed, set(never)
        self.queue: list[Answer] = [] if remember is None else remember.queue
        self.log: list[tuple[str, str, np.ndarray]] = [] if remember is None else remember.log
        self.stop_after, self.blocks = stop_after, 0

    def open(self):
        pass

    def send(self, trials: list[Trial]) -> None:
        self.blocks += 1
        if self.stop_after is not None and self.blocks > self.stop_after:
            self.queue.extend(self._answer(t) for t in trials)  # the rig answers, but MANGO is stopped first
            raise KeyboardInterrupt
        for t in trials:
            u = self.rng.random()
            if t.image_id in self.never or u < self.drop:
                continue
            a = self._answer(t)
            if u < self.drop + self.malformed:
                a = Answer(t.trial_id, t.image_id, t.block, None, time.time(), problem="garbled", raw={"x": "?"})
            self.queue.append(a)
            if self.rng.random() < self.duplicate:
                self.queue.append(a)

    def _answer(self, t: Trial) -> Answer:
        r = truth(t.image)
        self.log.append((t.trial_id, t.image_id, r))
        return Answer(t.trial_id, t.image_id, t.block, r, time.time())

    def receive(self, timeout: float) -> list[Answer]:
        out, self.queue[:] = list(self.queue), []
        return out


def rig(transport, spec="ch:1", **kw) -> RigTarget:
    return RigTarget("fake", spec, (1, 28, 28), transport=transport, timeout=kw.pop("timeout", 0.2), **kw)


def presentations(run_dir) -> pd.DataFrame:
    with RunStore.read(run_dir) as store:
        df = pd.read_sql_query("SELECT p.*, i.png FROM presentations p LEFT JOIN images i ON p.image = i.image",
                               store.conn)
    return df


def test_faulty_rig_session_accounts_for_every_presentation(tmp_path, sngan):
    fake = FakeRig(drop=0.1, duplicate=0.02, malformed=0.01, seed=1)
    res = mango.run(target=rig(fake, references=2), generator=sngan, optimizer="ga", budget=300, seed=0,
                    out=tmp_path / "r", progress=False)
    p = presentations(tmp_path / "r")
    assert len(p) == len(set(p["trial"])) and len(p) <= 300 + 2  # each trial once; the budget counts them all
    assert set(p["status"]) <= {"ok", "missing", "malformed", "late"} and (p["status"] == "missing").any()
    assert (p["kind"] == "reference").sum() >= 2 * 10 and p.loc[p["kind"] == "reference", "query"].isna().all()
    sent = {tid: r for tid, _, r in fake.log}
    for _, row in p[p["status"] == "ok"].iterrows():  # the responses stored are the rig's for that very image
        stored = np.frombuffer(row["responses"], "<f8")
        assert np.array_equal(stored, sent[row["trial"]]) and np.allclose(stored, truth(unpng(row["png"])))
    # a query's response is the mean of channel 1 over its ok presentations; never a made-up value
    ok = p[(p["status"] == "ok") & (p["kind"] == "search")]
    per_query = ok.groupby("query")["responses"].apply(lambda rs: np.mean([np.frombuffer(r, "<f8")[1] for r in rs]))
    hist = res.history.set_index("query")
    assert np.allclose(hist.loc[per_query.index, "response"], per_query.to_numpy())
    assert hist.drop(per_query.index)["response"].isna().all()  # never answered: left out (NaN), not worst
    with RunStore.read(tmp_path / "r") as store:
        verdicts = pd.read_sql_query("SELECT verdict FROM answers", store.conn)["verdict"]
    assert {"ok", "duplicate", "malformed"} <= set(verdicts)


def test_an_image_never_answered_is_left_out_not_worst(tmp_path, sngan):
    class Picky(FakeRig):  # never answers the first candidate of each batch
        def send(self, trials):
            super().send([t for t in trials if not t.image_id.endswith("0")])

    res = mango.run(target=rig(Picky(), reshows=2), generator=sngan, optimizer="sepcma", budget=200, seed=0,
                    out=tmp_path / "r", progress=False)
    p = presentations(tmp_path / "r")
    left = res.history[res.history["response"].isna()]
    assert len(left) > 0 and left["value"].isna().all()  # recorded as not measured
    shown = p[p["image"] == f"q{int(left['query'].iloc[0]):06d}"]
    assert len(shown) == 3 and (shown["status"] == "missing").all()  # shown once, then re-shown twice


def test_stopped_mid_block_resumes_and_matches_answers_sent_before(tmp_path, sngan):
    kw = dict(generator=sngan, optimizer="sepcma", budget=160, seed=2, progress=False)
    full = mango.run(target=rig(FakeRig(seed=5)), out=tmp_path / "full", **kw)
    first = FakeRig(seed=5, stop_after=4)
    with pytest.raises(KeyboardInterrupt, match="continue with: mango run --resume"):
        mango.run(target=rig(first), out=tmp_path / "cut", **kw)
    assert (presentations(tmp_path / "cut")["status"] == "sent").sum() > 0  # the block in flight is on record
    again = FakeRig(seed=5, remember=first)  # the rig answered meanwhile: its answers wait in the queue
    resumed = mango.run(target=rig(again), out=tmp_path / "cut", resume=True, **kw)
    p = presentations(tmp_path / "cut")
    assert "sent" not in set(p["status"]) and len(p) == len(presentations(tmp_path / "full"))  # nothing re-shown
    assert p["png"].notna().all()  # the images of the block in flight were stored after the restart
    pd.testing.assert_series_equal(resumed.history["response"], full.history["response"])


def test_the_default_on_codes_shows_a_rig_blocks_not_single_images(tmp_path, patches):
    """codes prefers one image per ask; on a rig the default batch is RIG_BATCH images per block, said and
    recorded (a resume keeps it); an explicit --batch is kept."""
    from mango.optimizers.auto import RIG_BATCH

    res = mango.run(target=rig(FakeRig()), generator=patches, budget=2 * RIG_BATCH, out=tmp_path / "r",
                    progress=False)
    assert (res.config.optimizer, res.config.batch) == ("codes-noisy", RIG_BATCH)
    assert res.history["batch"].value_counts().tolist() == [RIG_BATCH, RIG_BATCH]
    with RunStore.read(tmp_path / "r") as store:
        assert f"batch {RIG_BATCH} (auto: a rig shows images in blocks" in " ".join(store.events()["text"])
    again = mango.run(target=rig(FakeRig()), generator=patches, budget=3 * RIG_BATCH, out=tmp_path / "r",
                      resume=True, progress=False)
    assert again.config.batch == RIG_BATCH and len(again.history) == 3 * RIG_BATCH
    mine = mango.run(target=rig(FakeRig()), generator=patches, budget=10, batch=5, out=tmp_path / "b",
                     progress=False)
    assert mine.config.batch == 5


def test_channel_out_of_range_fails_at_start(tmp_path, sngan):
    with pytest.raises(MangoError, match=r"channel 7 out of range: the rig records 4 channels \(0..3\)"):
        mango.run(target=rig(FakeRig(), "ch:7"), generator=sngan, budget=20, out=tmp_path / "r", progress=False)
    with pytest.raises(MangoError, match="malformed rig target 'lif2:3'"):
        rig(FakeRig(), "lif2:3")
    assert not (tmp_path / "r").exists()


def test_objective_is_the_mean_of_the_named_channels(tmp_path, sngan):
    res = mango.run(target=rig(FakeRig(), "ch:0,3"), generator=sngan, optimizer="random", budget=20, batch=10,
                    out=tmp_path / "r", progress=False)
    img = sngan.pixels(res.best_latent[None])[0]
    pix = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert res.best_response == pytest.approx(truth(pix)[[0, 3]].mean())


def test_export_has_one_row_per_presentation_with_its_status(tmp_path, sngan):
    mango.run(target=rig(FakeRig(drop=0.2, seed=3), references=1), generator=sngan, optimizer="random", budget=60,
              batch=10, out=tmp_path / "r", progress=False)
    out = mango.export_run(tmp_path / "r", "csv", tmp_path / "h.csv")
    table = pd.read_csv(out)
    p = presentations(tmp_path / "r")
    assert len(table) == len(p) and set(table["status"]) == set(p["status"])
    assert {"trial", "image", "kind", "block", "sent", "answered", "ch0", "ch3", "z0"} <= set(table.columns)
    ok = table[(table["status"] == "ok") & (table["kind"] == "search")]
    assert np.allclose(ok["response"], ok["ch1"]) and ok["z0"].notna().all()
    assert table.loc[table["kind"] == "reference", "query"].isna().all()
