import av
import numpy as np
import pytest

from ventriloquist.config import SAMPLE_RATE, VideoConfig
from ventriloquist.errors import InputError
from ventriloquist.video import VideoWriter, frame_strip, read_frames, timed_frames, video_info


def _streams(path):
    with av.open(str(path)) as c:
        return ([s.codec_context.name for s in c.streams.video], [s.codec_context.name for s in c.streams.audio],
                float(c.duration / 1e6))


def test_writes_h264_and_aac_of_the_audio_duration(tmp_path):
    seconds = 2.2
    audio = (0.1 * np.sin(np.arange(int(seconds * SAMPLE_RATE)) * 0.05)).astype(np.float32)
    out = tmp_path / "out.mp4"
    n = int(round(seconds * 25))
    with VideoWriter(out, 64, 48, VideoConfig(fps=25), audio=audio) as w:
        for i in range(n):
            w.write(np.full((48, 64, 3), i * 4 % 255, np.uint8))
    assert out.stat().st_mode & 0o044            # readable by others, like any written file
    v, a, dur = _streams(out)
    assert v == ["h264"] and a == ["aac"]
    assert abs(dur - seconds) <= 1 / 25 + 0.03
    info = video_info(out)
    assert info["frames"] == n and info["width"] == 64 and info["has_audio"]
    assert sum(1 for _ in read_frames(out)) == n
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 64, 48) as w:
            w.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_frame_strip(tmp_path):
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 48) as w:
        for i in range(10):
            w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    png = frame_strip(out, tmp_path / "strip.png", count=4, height=48)
    import cv2
    img = cv2.imread(str(png))
    assert img.shape == (48, 4 * 64, 3)


def test_unreadable_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="bad.mp4"):
        video_info(bad)
    with pytest.raises(InputError, match="does not exist"):
        video_info(tmp_path / "none.mp4")


def test_damaged_video_gives_its_readable_frames_with_a_warning(tmp_path, damage):
    """A video with a damaged stretch (bad download, disk error) is read around the damage, as players do."""
    from ventriloquist.errors import InputWarning
    rng = np.random.default_rng(0)
    good = tmp_path / "good.mp4"
    with VideoWriter(good, 64, 48) as w:
        for _ in range(50):
            w.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    bad = damage(good, 3000)
    with pytest.warns(InputWarning, match="damaged.mp4.*skipped"):
        n = sum(1 for _ in read_frames(bad))
    assert 25 <= n < 50
    with pytest.warns(InputWarning, match="damaged.mp4.*skipped"):
        timed = [t for t, _ in timed_frames(bad)]           # what a dub follows the face through: the same
    assert len(timed) == n
    cut = tmp_path / "cut.mp4"                    # the index sits at the end: nothing can be decoded
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.mp4"):
        next(read_frames(cut))


def test_frames_written_behind_are_kept_in_order_and_an_encoding_error_fails_the_write(tmp_path):
    """Frames are encoded in a second thread: each is copied when written (the caller may reuse its buffer),
    and an error while encoding fails the video, leaving no file."""
    out = tmp_path / "out.mp4"
    buf = np.zeros((48, 64, 3), np.uint8)
    with VideoWriter(out, 64, 48, VideoConfig(fps=25, crf=0)) as w:
        for i in range(30):
            buf[:] = i * 8
            w.write(buf)
    assert [int(round(f.mean() / 8)) for f in read_frames(out)] == list(range(30))


    class Full:                                             # a disk that fills up while the video is encoded
        def __init__(self, container):
            self.container = container

        def mux(self, packet):
            raise OSError(28, "No space left on device")

        def close(self):
            self.container.close()
    from ventriloquist.errors import OutputError
    with pytest.raises(OutputError, match="bad.mp4"):
        with VideoWriter(tmp_path / "bad.mp4", 64, 48) as w:
            w.container = Full(w.container)
            for i in range(300):
                w.write(np.full((48, 64, 3), i % 255, np.uint8))
    assert list(tmp_path.iterdir()) == [out]


def test_reading_ahead_keeps_order_hands_on_errors_and_stops_with_its_reader():
    from ventriloquist.video import ahead
    assert list(ahead(iter(range(50)), depth=4)) == list(range(50))

    def broken():
        yield 1
        raise InputError("damaged")
    with pytest.raises(InputError, match="damaged"):
        list(ahead(broken()))
    made = []

    def counted():
        for i in range(1000):
            made.append(i)
            yield i
    it = ahead(counted(), depth=4)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert len(made) <= 3 + 4 + 2
