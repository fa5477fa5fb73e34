"""The training store (train/store.py): clips' arrays in memory-mapped files, read back as they were made."""
from __future__ import annotations

import numpy as np
import pytest

from ventriloquist.motion.sequence import RestDeformations, rest_deformations
from ventriloquist.train import store


def _clip(i: int) -> dict:
    rng = np.random.default_rng(i)
    t = 5 + 3 * i
    return {"key": f"c{i}", "split": "train" if i < 4 else "test", "speaker": f"s{i % 2}", "corpus": "X",
            "emotion": "neutral" if i % 3 == 0 else "happy", "frames": t, "weight": 0.5 * i, "artic": None,
            "shapes": rng.normal(size=(t, 68, 2)).astype(np.float32), "mel": rng.normal(size=(4 * t, 80)).astype(np.float32),
            "l_emo": rng.random(7), "label": np.int64(i)}


def test_a_store_gives_back_what_was_made_in_order(tmp_path):
    items = list(range(6))
    s = store.build(tmp_path / "s", items, _clip, "v1")
    assert len(s) == 6
    for i, got in enumerate(s):
        want = _clip(i)
        assert got.keys() == want.keys()
        for k, v in want.items():
            if isinstance(v, np.ndarray) and v.ndim:
                assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k
                assert type(got[k]) is np.ndarray and got[k].flags.writeable     # an ordinary array, not the mapping
            else:
                assert got[k] == (v.item() if isinstance(v, np.ndarray) else v), k
    assert [c["key"] for c in s[2:4]] == ["c2", "c3"]
    assert [c["key"] for c in s.subset([5, 0])] == ["c5", "c0"]
    assert [c["key"] for c in s[:1] + s[4:5]] == ["c0", "c4"]
    assert s.scalar("split") == ["train"] * 4 + ["test"] * 2
    assert list(s.frames("shapes")) == [5 + 3 * i for i in range(6)]
    assert list(s.frames("nothing")) == [0] * 6
    np.testing.assert_array_equal(s[1:3].rows("mel"), np.concatenate([_clip(1)["mel"], _clip(2)["mel"]]))
    mels = s.subset([4, 2]).field("mel")                               # one field, read when asked for
    assert len(mels) == 2 and np.array_equal(mels[0], _clip(4)["mel"]) and np.array_equal(mels[-1], _clip(2)["mel"])
    with pytest.raises(IndexError):
        mels[2]


def test_a_store_is_reused_until_what_it_depends_on_changes(tmp_path):
    made = []

    def make(i):
        made.append(i)
        return _clip(i)

    store.build(tmp_path / "s", [0, 1, 2], make, "v1")
    store.build(tmp_path / "s", [0, 1, 2], make, "v1")
    assert made == [0, 1, 2]                                          # read back, not made again
    again = store.build(tmp_path / "s", [0, 1], make, "v2")          # another fingerprint: rebuilt
    assert made == [0, 1, 2, 0, 1] and len(again) == 2
    assert store.fingerprint(a=1, b=[1, 2]) == store.fingerprint(b=[1, 2], a=1) != store.fingerprint(a=2, b=[1, 2])


def test_an_unfinished_store_is_built_again(tmp_path):
    store.build(tmp_path / "s", [0, 1], _clip, "v1")
    (tmp_path / "s" / store.STORE_FILE).unlink()                     # as if the run had stopped mid-build
    s = store.build(tmp_path / "s", [0, 1], _clip, "v1")
    assert np.array_equal(s[1]["mel"], _clip(1)["mel"])


def test_statistics_read_every_clip_of_a_small_set_and_a_bounded_sample_of_a_large_one(tmp_path):
    s = store.build(tmp_path / "s", list(range(6)), _clip, "v1")
    total = int(s.frames("shapes").sum())
    assert len(s.for_statistics("shapes")) == 6
    sample = s.for_statistics("shapes", cap=total // 2)
    assert 1 <= len(sample) < 6 and sample.frames("shapes").sum() <= total // 2 + max(s.frames("shapes"))
    assert sample[0]["key"] == "c0"                                    # evenly spaced, from the first clip on


def test_a_field_that_changes_shape_between_clips_is_kept_apart(tmp_path):
    def make(i):
        return {"x": np.zeros((3, 2 + i), np.float32)}
    s = store.build(tmp_path / "s", [0, 1], make, "v1")
    assert [c["x"].shape for c in s] == [(3, 2), (3, 3)]


def test_rows_of_no_values_come_back_with_their_length(tmp_path):
    """A G without an emotion branch stores (T, 0) emotion rows: nothing is written, the shape comes back."""
    s = store.build(tmp_path / "s", [3, 5], lambda t: {"q_emo": np.zeros((t, 0), np.float32),
                                                         "x": np.ones((t, 2), np.float32)}, "v1")
    assert [c["q_emo"].shape for c in s] == [(3, 0), (5, 0)] and [c["x"].shape for c in s] == [(3, 2), (5, 2)]


def test_anything_but_arrays_and_scalars_is_refused(tmp_path):
    with pytest.raises(TypeError, match="'bad'"):
        store.build(tmp_path / "s", [0], lambda i: {"bad": [1, 2]}, "v1")


def test_deformations_read_from_a_store_equal_those_of_clips_in_memory(tmp_path):
    clips = [_clip(i) for i in range(6)]
    s = store.build(tmp_path / "s", list(range(6)), _clip, "v1")
    lazy = RestDeformations(s)
    assert len(lazy) == 6
    for a, b in zip(rest_deformations(clips), lazy):
        np.testing.assert_array_equal(a, b)
    part = RestDeformations(s[:2], lazy.rest)                         # a sample keeps the set's rest faces
    np.testing.assert_array_equal(part[1], lazy[1])
