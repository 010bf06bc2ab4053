"""The rig transports: XDream-compatible files and ZeroMQ, against hand-made answers and a fake rig."""
from __future__ import annotations

import io
import json
import threading
import time

import h5py
import numpy as np
import pytest
import zmq
from PIL import Image

from mango.errors import MangoError
from mango.rig.answers import read_mat, write_answer, write_h5, write_mat
from mango.rig.files import FilesTransport
from mango.rig.images import decode_png, decode_raw, encode_png, image_sha1
from mango.rig.protocol import Trial
from mango.rig.zmq import ZmqTransport, decode_trial, pack, parse_header, trial_frames

RNG = np.random.default_rng(0)


def trials(block: int, n: int = 4, shape=(8, 8, 1), ids=None) -> list[Trial]:
    ids = ids or [f"q{block * 100 + i:06d}" for i in range(n)]
    return [Trial(f"b{block}-{i}", ids[i], block, i, RNG.integers(0, 256, shape, dtype=np.uint8)) for i in range(n)]


def names(ts: list[Trial]) -> list[str]:
    return [f"block{t.block:03d}_{t.index:03d}_{t.image_id}.png" for t in ts]


def files_sent(folder, block: int, n: int, **kw) -> tuple[FilesTransport, list[Trial]]:
    tr = FilesTransport(folder, **kw)
    tr.open()
    ts = trials(block, n)
    tr.send(ts)
    return tr, ts


def receive_all(tr, n: int, timeout: float = 5.0) -> list:
    got, end = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        got += tr.receive(0.05)
    return got


@pytest.mark.parametrize("shape", [(5, 7, 1), (6, 4, 3), (3, 3, 4)])
def test_png_round_trip_is_exact(shape):
    img = RNG.integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(img)), img)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(img)))).reshape(shape), img)


def test_block_images_are_named_as_xdream_and_renamed_into_place(tmp_path):
    tr, ts = files_sent(tmp_path, 3, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block003.json"] + [f"block003_{i:03d}_q{300 + i:06d}.png"
                                                                             for i in range(4)]  # no temp left
    for t, name in zip(ts, names(ts), strict=True):
        assert np.array_equal(decode_png((tmp_path / name).read_bytes()), t.image)
    manifest = json.loads((tmp_path / "block003.json").read_text())
    assert [i["trial"] for i in manifest["images"]] == [t.trial_id for t in ts]
    with pytest.raises(MangoError, match="already sent"):
        tr.send(ts)
    with pytest.raises(MangoError, match="cannot be part of a file name"):
        tr.send(trials(4, 1, ids=["../x"]))
    with pytest.raises(MangoError) as e:
        FilesTransport(tmp_path / "nope").open()
    assert str(e.value) == f"rig folder {tmp_path / 'nope'} not found: create it or start the rig first"


def matlab_mat(path, names, resp_images_by_channels):
    """A v7.3 MAT-file built by hand as MATLAB lays it out: n x 1 cell -> HDF5 (1, n) references to
    uint16 (L, 1) char datasets; tEvokedResp channels x images in MATLAB -> HDF5 (images, channels)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = np.empty((1, len(names)), dtype=h5py.ref_dtype)
        for i, n in enumerate(names):
            ds = f.create_dataset(f"#refs#/{chr(97 + i)}", data=np.array([ord(c) for c in n], np.uint16)[:, None])
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            refs[0, i] = ds.ref
        f.create_dataset("stimulusID", data=refs).attrs["MATLAB_class"] = np.bytes_("cell")
        f.create_dataset("tEvokedResp", data=np.asarray(resp_images_by_channels, np.float64))


def xdream_reads_mat(path):
    """XDream's reading (utils.load_block_mat): the first row of stimulusID's references, each char
    dataset viewed as UTF-32 and cut after the last backslash; tEvokedResp as it is, (images, channels)."""
    with h5py.File(path, "r") as f:
        ids = ["".join(np.array(f[r]).astype(np.uint32).view("U1").flatten()).split("\\")[-1]
               for r in np.array(f["stimulusID"])[0]]
        return ids, np.array(f["tEvokedResp"])


@pytest.mark.parametrize("match", ["strict", "loose"])
def test_matlab_answer_is_matched_to_the_images_sent(tmp_path, match):
    tr, ts = files_sent(tmp_path, 0, 3, match=match)
    sent = names(ts)
    # shown in another order, with a path (XDream keeps what follows the last backslash), one not shown
    shown = ["C:\\stimuli\\" + sent[2], sent[0]] if match == "strict" else [f"{ts[2].image_id}.png", "block9_9_" +
                                                                             ts[0].image_id + ".bmp"]
    matlab_mat(tmp_path / "block000.mat", shown, [[7.0, 8.0], [1.0, 2.0]])
    assert read_mat(tmp_path / "block000.mat")[0] == [s.split("\\")[-1] for s in shown]
    got = receive_all(tr, 2)
    assert [(a.trial_id, a.responses.tolist(), a.problem) for a in got] == [
        (ts[2].trial_id, [7, 8], None), (ts[0].trial_id, [1, 2], None)]
    assert tr.channels == 2
    assert not (tmp_path / sent[0]).exists() and (tmp_path / "shown" / sent[0]).exists()  # answered: retired
    assert tr.receive(0.05) == []  # read once


def test_strict_match_rejects_a_loose_name_and_unknown_ids(tmp_path):
    tr, ts = files_sent(tmp_path, 1, 2)
    shown = [f"{ts[0].image_id}.png", "block001_001_zzz.png", f"block001_001_{ts[1].image_id}.png"]
    write_mat(tmp_path / "block001.mat", shown, np.arange(12.0).reshape(3, 4))  # our writer, read as XDream does:
    ids, resp = xdream_reads_mat(tmp_path / "block001.mat")
    assert ids == shown and resp.tolist() == np.arange(12.0).reshape(3, 4).tolist()
    assert (tmp_path / "block001.mat").read_bytes()[:10] == b"MATLAB 7.3"
    got = receive_all(tr, 3)
    assert got[0].problem.startswith("unknown image id") and got[1].problem.startswith("unknown image id")
    assert got[2].trial_id == ts[1].trial_id and got[2].problem is None


@pytest.mark.parametrize("indices", [None, [2, 0]])
def test_h5_answer_with_and_without_indices(tmp_path, indices):
    tr, ts = files_sent(tmp_path, 2, 3)
    scores = np.arange(3.0) if indices is None else np.array([[5.0, 6.0], [7.0, 8.0]])
    write_h5(tmp_path / "block002.h5", scores, indices)
    got = receive_all(tr, len(scores))
    want = ([(t.trial_id, [float(i)]) for i, t in enumerate(ts)] if indices is None  # 1-D: one channel, in order
            else [(ts[2].trial_id, [5, 6]), (ts[0].trial_id, [7, 8])])  # positions in the sorted file names
    assert [(a.trial_id, a.responses.tolist()) for a in got] == want


def test_answer_files_of_other_blocks_sessions_and_processes(tmp_path):
    ts8 = trials(8, 2)
    write_mat(tmp_path / "block000.mat", ["block000_000_old.png"], [[1.0]])  # from before open: not read...
    (tmp_path / "block000_000_old.png").write_bytes(b"x")
    write_mat(tmp_path / "block008.mat", names(ts8), [[1.0], [2.0]])  # ...unless its trials are expected
    tr, ts = files_sent(tmp_path, 0, 1)  # block 0 again: the old files are moved aside
    assert sorted(p.name for p in (tmp_path / "stale").iterdir()) == ["block000.mat", "block000_000_old.png"]
    assert tr.receive(0.05) == []
    tr.expect(ts8)  # sent before a crash; the rig answered while MANGO was down
    assert [a.trial_id for a in receive_all(tr, 2)] == [t.trial_id for t in ts8]
    write_mat(tmp_path / "block007.mat", ["block007_000_q1.png"], [[1.0]])
    got = receive_all(tr, 1)
    assert got[0].problem == "answer for block 7, which was never sent" and got[0].trial_id is None
    write_mat(tmp_path / "block000.mat", names(ts), [[1.0]])
    assert receive_all(tr, 1)[0].problem is None
    write_mat(tmp_path / "block000.mat", names(ts), [[2.0]])  # the rig wrote it again
    assert receive_all(tr, 1)[0].problem == "answer for block 0, which was already answered by block000.mat"


@pytest.mark.parametrize("corrupt", ["truncated", "rows", "text"])
@pytest.mark.parametrize("ext", ["mat", "h5"])
def test_malformed_answer_files_become_problems_and_are_kept(tmp_path, corrupt, ext):
    tr, ts = files_sent(tmp_path, 4, 3, settle=0.1)
    write_answer(tmp_path / f"block004.{ext}", names(ts), np.ones((3, 2)), None, corrupt)
    got = receive_all(tr, 3)
    assert [a.trial_id for a in got] == [t.trial_id for t in ts]
    assert all(a.problem.startswith("malformed: ") and a.responses is None for a in got)
    assert (tmp_path / f"block004.{ext}.malformed").exists() and not (tmp_path / f"block004.{ext}").exists()
    # the rig writes a good one after all: it is read
    write_answer(tmp_path / f"block004.{ext}", names(ts), np.ones((3, 2)))
    assert [a.problem for a in receive_all(tr, 3)] == [None] * 3


def test_an_answer_still_being_written_is_not_read_early(tmp_path):
    tr, ts = files_sent(tmp_path, 6, 2, settle=0.3)
    write_mat(tmp_path / "whole.mat", names(ts), [[1.0], [2.0]], atomic=False)
    data = (tmp_path / "whole.mat").read_bytes()
    (tmp_path / ".block006.mat.tmp").write_bytes(data)  # a temporary name: never read
    assert tr.receive(0.1) == []
    path = tmp_path / "block006.mat"
    with open(path, "wb") as f:  # MATLAB writing in place, without a rename
        for k in range(3):
            f.write(data[k * len(data) // 4:(k + 1) * len(data) // 4])
            f.flush()
            assert tr.receive(0.1) == []
        f.write(data[3 * len(data) // 4:])
    got = receive_all(tr, 2)
    assert [(a.trial_id, a.responses.tolist(), a.problem) for a in got] == [(ts[0].trial_id, [1.0], None),
                                                                            (ts[1].trial_id, [2.0], None)]


# -- ZeroMQ -------------------------------------------------------------------------------------------
class FakeRig(threading.Thread):
    """A ROUTER on 127.0.0.1 answering hello/ping; ``reply(header, image)`` gives the frames to send back."""

    def __init__(self, session: str = "s1", channels: int = 2, reply=None):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.session, self.channels = session, channels
        self.reply = reply or (lambda h, img: [pack("answer", trial=h["trial"], image=h["image"], block=h["block"],
                                                     responses=[float(img.mean()), 1.0])])
        self.halt, self.images = threading.Event(), {}
        self.start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.sock.poll(10):
                continue
            peer, head, *rest = self.sock.recv_multipart()
            h = parse_header(head)
            if h["type"] in ("hello", "ping"):
                kind = "hello" if h["type"] == "hello" else "pong"
                self.sock.send_multipart([peer, pack(kind, session=self.session, channels=self.channels)])
            elif h["type"] == "trial":
                img = decode_trial(h, rest)
                self.images[h["trial"]] = img
                for frame in self.reply(h, img):
                    self.sock.send_multipart([peer, frame])
        self.sock.close(0)
        self.ctx.term()

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


def test_zmq_round_trip_raw_and_png():
    rig = FakeRig()
    for fmt in ("raw", "png"):
        tr = ZmqTransport(rig.address, heartbeat=0.1, image_format=fmt)
        tr.open()
        assert (tr.channels, tr.rig_session) == (2, "s1")
        ts = trials(0 if fmt == "raw" else 1, 5, shape=(6, 5, 3))
        tr.send(ts)
        got = receive_all(tr, 5)
        assert sorted(a.trial_id for a in got) == sorted(t.trial_id for t in ts)
        for t in ts:
            assert image_sha1(rig.images[t.trial_id]) == image_sha1(t.image)
        assert all(a.problem is None and a.responses[1] == 1.0 for a in got) and tr.alive()
        t0 = time.monotonic()
        assert tr.receive(0.2) == []  # waits at most its timeout
        assert 0.19 < time.monotonic() - t0 < 0.5
        tr.close()
        tr.close()  # idempotent
        assert not tr.alive()
    rig.stop()
    t = trials(2, 1, shape=(4, 3, 1))[0]
    h, data = json.loads(trial_frames(t)[0]), trial_frames(t)[1]
    assert h == {"v": 1, "type": "trial", "trial": t.trial_id, "image": t.image_id, "block": 2, "index": 0,
                 "format": "raw", "shape": [4, 3, 1], "dtype": "uint8"}
    assert np.array_equal(decode_raw(data, h["shape"]), t.image)


def answer(h: dict, **change) -> bytes:
    fields = {"trial": h["trial"], "image": h["image"], "block": h["block"], "responses": [1, 2], **change}
    return pack("answer", **{k: v for k, v in fields.items() if v is not None})


BAD = {"t0": [b"{not json"], "t1": [{"image": None}], "t2": [{"responses": [1, "x"]}], "t3": [{"responses": [1, 2, 3]}],
       "t4": [{"trial": "t99"}], "t5": [{"image": "other"}], "t6": [pack("surprise")],
       "t7": [json.dumps({"v": 2, "type": "answer"}).encode()], "t8": [{}, {}]}


def test_zmq_malformed_messages_become_problem_answers():
    rig = FakeRig(reply=lambda h, img: [m if isinstance(m, bytes) else answer(h, **m) for m in BAD[h["trial"]]])
    try:
        tr = ZmqTransport(rig.address, heartbeat=0.1)
        tr.open()
        tr.send([Trial(f"t{i}", f"q{i}", 0, i, np.zeros((2, 2, 1), np.uint8)) for i in range(9)])
        got = receive_all(tr, 10)
        problems = [a.problem for a in got]
        assert len(got) == 10 and all(p is not None for p in problems[:8]) and problems[8:] == [None, None]
        wants = ["not JSON", "needs 'trial' and 'image'", "other than numbers", "wrong number of channels",
                 "never sent", "names image other", "unknown type 'surprise'", "protocol version 2"]
        assert all(want in problem for want, problem in zip(wants, problems[:8], strict=True)), problems
        assert [a.trial_id for a in got[8:]] == ["t8", "t8"]  # a duplicate is reported, twice
        tr.close()
    finally:
        rig.stop()


def test_zmq_unreachable_and_malformed_addresses_are_one_line():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(MangoError) as e:
        ZmqTransport(f"tcp://127.0.0.1:{port}", connect_timeout=0.5).open()
    assert time.monotonic() - t0 < 2.0
    assert str(e.value) == (f"no rig answers at tcp://127.0.0.1:{port}: start it (mango rig simulate ...) or check "
                            "the address")
    for bad in ("127.0.0.1:5555", "tcp://host", "tcp://h:99999", "udp://h:1"):
        with pytest.raises(MangoError, match="malformed rig address") as e:
            ZmqTransport(bad).open()
        assert "\n" not in str(e.value)

