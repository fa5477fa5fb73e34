import cv2
import numpy as np
import pytest

from ventriloquist.face.topology import INNER_LIPS, OUTER_LIPS, interocular
from ventriloquist.render import Renderer
from ventriloquist.render.warp import LOWER_BLOCK


@pytest.fixture(scope="module")
def photo(face_image, face_landmarks):
    return face_image, face_landmarks.astype(np.float64)


def talking_motion(k: np.ndarray, frames: int) -> np.ndarray:
    """Landmark frames (T, 68, 2): the jaw opening and closing and a small head rotation."""
    pivot = k[27:31].mean(0)
    out = np.repeat(k[None].astype(np.float64), frames, axis=0)
    for i in range(frames):
        out[i, LOWER_BLOCK, 1] += 0.3 * interocular(k) * 0.5 * (1 - np.cos(2 * np.pi * i / 12.0))
        rot = cv2.getRotationMatrix2D((float(pivot[0]), float(pivot[1])), 4.0 * np.sin(2 * np.pi * i / 40.0), 1.0)
        out[i] = out[i] @ rot[:, :2].T + rot[:, 2]
    return out


@pytest.fixture(scope="module")
def renderer(photo):
    return Renderer(*photo)


def at_twice(photo) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its landmarks at twice the size: eyes big enough to look into."""
    image, k = photo
    return cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), 2 * k + 0.5


def eye_coords(k: np.ndarray, eye: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray, float]:
    """Each pixel's place along an eye (``s``: 0 and 1 at dlib's corners) and across it (``t``, down the face),
    in eye widths, and the eye's width in pixels."""
    a, b = k[eye[0]], k[eye[3]]
    width = float(np.linalg.norm(b - a))
    ex = (b - a) / width
    ey = np.array([-ex[1], ex[0]]) * (1 if ex[0] > 0 else -1)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((xx - a[0]) * ex[0] + (yy - a[1]) * ex[1]) / width, ((xx - a[0]) * ey[0] + (yy - a[1]) * ey[1]) / width, width


def shut_lids(k: np.ndarray) -> np.ndarray:
    """``k`` with both upper lids down to 0.05 of the way from the lower ones."""
    from ventriloquist.face.topology import LID_PAIRS
    shut = k.copy()
    for up, down in LID_PAIRS:
        shut[up] = k[down] + 0.05 * (k[up] - k[down])
    return shut


def opened(k: np.ndarray, amount: float = 0.25) -> np.ndarray:
    t = k.copy()
    t[LOWER_BLOCK, 1] += amount * interocular(k)  # jaw 5-11, lower lip 55-59 and 65-67
    return t


def polygon_mask(shape, pts) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m.astype(bool)


def luma(image: np.ndarray, mask: np.ndarray) -> float:
    return float(image[mask].astype(np.float64).mean())


def test_source_landmarks_give_the_source(photo, renderer):
    image, k = photo
    assert np.array_equal(renderer.render(k), image)
    jitter = k + np.random.default_rng(0).normal(0, 0.3, k.shape)
    assert np.abs(renderer.render(jitter).astype(int) - image).mean() < 1.0


def test_output_is_a_new_uint8_frame(photo, renderer):
    image, k = photo
    out = renderer.render(opened(k))
    assert out.shape == image.shape and out.dtype == np.uint8
    out[:] = 0
    assert np.array_equal(renderer.render(k), image)


def test_opening_the_mouth_shows_a_real_interior(photo, renderer):
    """A wide opening is filled with a real mouth interior: bright, pale teeth and a dark cavity, both."""
    image, k = photo
    t = opened(k)
    out = renderer.render(t)
    hole = cv2.erode(polygon_mask(image.shape, t[INNER_LIPS]).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    lips = polygon_mask(image.shape, t[OUTER_LIPS]) & ~polygon_mask(image.shape, t[INNER_LIPS])
    assert hole.sum() > 50
    assert np.abs(out[hole].astype(int) - image[hole]).mean() > 30
    px = out[hole].astype(np.float64)
    bright, sat = px.mean(1), (px.max(1) - px.min(1)) / np.maximum(px.max(1), 1)
    assert np.mean((bright > luma(out, lips)) & (sat < 0.3)) > 0.1        # teeth
    assert np.mean(bright < 0.5 * luma(out, lips)) > 0.03                  # the cavity between them


def test_mouth_interior_option(photo):
    image, k = photo
    t = opened(k, 0.3)
    hole = polygon_mask(image.shape, t[INNER_LIPS])
    plain = Renderer(image, k, mouth_interior=False).render(t)
    full = Renderer(image, k).render(t)
    assert np.abs(plain[hole].astype(int) - full[hole]).mean() > 20
    outside = ~cv2.dilate(polygon_mask(image.shape, t[OUTER_LIPS]).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(plain[outside], full[outside])


def test_background_is_bit_exact(photo, renderer):
    image, k = photo
    mesh = renderer.mesh
    ring = mesh.src[mesh.i_ring]
    x0, y0 = np.floor(ring.min(0)).astype(int) - 1
    x1, y1 = np.ceil(ring.max(0)).astype(int) + 2
    outside = np.ones(image.shape[:2], bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    for t in talking_motion(k, 8)[1:]:
        out = renderer.render(t)
        assert np.array_equal(out[outside], image[outside])
        assert np.array_equal(out[:20], image[:20]) and np.array_equal(out[-20:], image[-20:])
        assert np.array_equal(out[:, :20], image[:, :20]) and np.array_equal(out[:, -20:], image[:, -20:])


@pytest.mark.parametrize("bad", ["nan", "inf", "huge", "collapsed", "scrambled"])
def test_bad_targets_do_not_crash(photo, renderer, bad):
    image, k = photo
    rng = np.random.default_rng(1)
    t = {
        "nan": np.where(np.arange(68)[:, None] == 30, np.nan, k),
        "inf": np.full_like(k, np.inf),
        "huge": k + rng.normal(0, 1e9, k.shape),
        "collapsed": np.full_like(k, 200.0),
        "scrambled": rng.uniform(-600, 1200, k.shape),
    }[bad]
    out = renderer.render(t)
    assert out.shape == image.shape and out.dtype == np.uint8
    if bad in ("nan", "inf"):
        assert np.array_equal(out, image)


def test_wrong_shapes_are_rejected(photo, renderer):
    image, k = photo
    with pytest.raises(ValueError):
        renderer.render(k[:60])
    with pytest.raises(ValueError):
        Renderer(image[..., 0], k)


def test_mesh_is_sound(renderer):
    mesh = renderer.mesh
    tris = mesh.triangles
    assert len(tris) <= 255 and tris.max() < len(mesh.src)
    p = mesh.src[tris]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    solid = np.abs(det) > 1e-6          # the mouth strips are flat on the source by design
    assert (np.sign(det[solid]) == np.sign(det[solid][0])).all(), "no triangle is folded on the source"
    edges = {frozenset(map(int, e)) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
    inner = INNER_LIPS.tolist()
    assert all(frozenset((inner[i], inner[(i + 1) % 8])) in edges for i in range(8))


def test_a_face_too_small_to_see_in_the_full_frame_is_reported(photo):
    """A far-away face in a big photo would have invisible lips at full frame: a warning says to crop."""
    import warnings

    from ventriloquist.config import RenderConfig
    from ventriloquist.errors import InputWarning
    from ventriloquist.render.framing import make_canvas
    image, k = photo
    big = np.zeros((4000, 6000, 3), np.uint8)
    with pytest.warns(InputWarning, match="--crop face"):
        make_canvas(big, k, RenderConfig(crop="full"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_canvas(image, k, RenderConfig(crop="full"))
        make_canvas(big, k, RenderConfig(crop="face"))


def test_a_face_crop_of_a_tight_head_shot_stays_inside_the_photo(photo):
    """A 256-px head shot the face nearly fills: the square shrinks its margin and shifts, so every
    canvas pixel comes from the photo (no edge pixels repeated down the sides)."""
    from ventriloquist.config import RenderConfig
    from ventriloquist.render.framing import make_canvas
    image, k = photo
    lo, hi = k.min(0), k.max(0)
    pad = 0.25 * float(max(hi - lo))
    x0, y0 = (lo - pad).astype(int)
    x1, y1 = (hi + pad).astype(int)
    shot, k_shot = image[y0:y1, x0:x1], k - [x0, y0]
    shot = cv2.resize(shot, (256, 256 * shot.shape[0] // shot.shape[1]))
    k_shot = k_shot * 256 / (x1 - x0)
    canvas = make_canvas(shot, k_shot, RenderConfig(size=256, crop="face"))
    m = canvas.photo_to_canvas
    corners = np.array([[0, 0], [255, 0], [0, 255], [255, 255]], np.float64)
    back = (corners - m[:, 2]) / m[0, 0]                               # canvas corners in photo pixels
    assert back.min() >= -0.5 and (back[:, 0] <= shot.shape[1] - 0.5).all() and (back[:, 1] <= shot.shape[0] - 0.5).all()
    face = canvas.map(k_shot)
    assert face.min() >= 0 and face.max() <= 256                       # the whole face is in the frame


def test_where_the_canvas_must_reach_past_the_photo_it_is_filled_by_a_blurred_mirror(photo):
    """A face wider than the photo is tall: the square needs pixels the photo lacks; they are a soft
    mirror of the photo, not the edge row repeated (streaks: every row of the band identical)."""
    from ventriloquist.config import RenderConfig
    from ventriloquist.render.framing import face_square, make_canvas
    image, k = photo
    lo, hi = k.min(0), k.max(0)
    y0, y1 = int(lo[1] + 0.3 * (hi - lo)[1]), int(hi[1] - 0.1 * (hi - lo)[1])    # a letterbox strip through the face
    strip, k_strip = image[y0:y1], k - [0, y0]
    centre, side = face_square(k_strip.min(0), k_strip.max(0), 1.0, strip.shape[1], strip.shape[0])
    assert side > strip.shape[0]                                       # the face is taller than the strip
    canvas = make_canvas(strip, k_strip, RenderConfig(size=256, crop="face"))
    top = int(canvas.photo_to_canvas[1, 2]) - 2                        # rows above the photo's first row
    assert top > 8
    band = canvas.image[:top].astype(np.float64)
    assert np.abs(np.diff(band, axis=0)).mean() > 0.05                 # rows differ: not one row smeared down
    assert np.abs(np.diff(band, axis=1)).mean() < np.abs(np.diff(canvas.image[top + 4:].astype(np.float64), axis=1)).mean()


def test_a_closed_eye_is_the_photos_lid_over_a_still_eyeball(photo, renderer):
    """Closing lids are the photo's own upper lid sliding down: dlib, re-detecting on the frame, finds the
    eye well closed (0.52 of its open height on this photo at 2x); half closed, the lower
    half of the eye is the photo's own (the iris is covered, not squashed); open eyes are left alone."""
    from ventriloquist.face.detect import face_landmarks
    from ventriloquist.face.topology import LEFT_EYE, LID_PAIRS, RIGHT_EYE, eye_opening
    image, k = photo
    assert np.array_equal(renderer.render(k), image)                  # open eyes: nothing drawn
    image = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)   # eyes big enough to look into
    k = 2 * k + 0.5
    renderer = Renderer(image, k)
    closed, half = k.copy(), k.copy()
    for up, down in LID_PAIRS:
        closed[up] = k[down] + 0.05 * (k[up] - k[down])
        half[up] = k[down] + 0.5 * (k[up] - k[down])
    shut = renderer.render(closed)
    found = face_landmarks(shut, "frame")
    assert float(eye_opening(found)) < 0.6 * float(eye_opening(face_landmarks(renderer.render(k), "frame")))
    frame = renderer.render(half)
    for eye in (RIGHT_EYE, LEFT_EYE):
        low = polygon_mask(image.shape, np.vstack([half[eye][[0]], half[eye][[1, 2]] * 0.5 + half[eye][[5, 4]] * 0.5,
                                                   half[eye][[3, 4, 5]]]))
        low = cv2.erode(low.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert low.sum() > 10
        assert np.abs(frame[low].astype(int) - image[low]).mean() < 6      # the eyeball did not move
        lid = polygon_mask(image.shape, np.vstack([half[eye][:4], k[eye][3:0:-1]]))
        assert np.abs(frame[lid].astype(int) - image[lid]).mean() > 10     # the lid covers the top of it


def test_a_shut_lid_is_smooth_skin_not_stretched_columns(photo, monkeypatch):
    """The open lid's thin band, pulled tall over a shut eye, would show its columns as vertical streaks;
    the shut lid's skin is smoothed along the eye, so across the eye it varies less."""
    import ventriloquist.render.eyes as eyes
    from ventriloquist.face.topology import LEFT_EYE, RIGHT_EYE
    image, k = at_twice(photo)
    shut = shut_lids(k)

    def streaks() -> float:
        gray = cv2.cvtColor(Renderer(image, k).render(shut), cv2.COLOR_RGB2GRAY).astype(np.float64)
        across = np.abs(np.diff(gray, axis=1))
        total = []
        for eye in (RIGHT_EYE, LEFT_EYE):
            yy, xx = np.nonzero(polygon_mask(image.shape, k[eye]))
            a, b = k[eye[0]], k[eye[3]]
            s = ((np.stack([xx, yy], 1) - a) @ (b - a)) / np.dot(b - a, b - a)
            mid = (s > 0.2) & (s < 0.8)
            total.append(across[yy[mid], xx[mid]].mean())
        return float(np.mean(total))
    smooth = streaks()
    monkeypatch.setattr(eyes, "LID_SMOOTH", 1e-3)
    rough = streaks()
    assert smooth < 0.9 * rough


def test_a_shut_lid_under_a_shadowed_socket_is_lit_as_the_skin_under_the_eye(photo):
    """Where the photo's open lid and brow bone lie in shadow (a deep-set eye, eyeshadow, a painting's socket),
    the shut lid is skin brought towards the light of the skin under the eye, not a grey patch of that shadow
    (on this photo with its sockets darkened: 0.60 of the under-eye's light before, 0.69 now)."""
    from ventriloquist.face.topology import LEFT_BROW, LEFT_EYE, RIGHT_BROW, RIGHT_EYE
    image, k = photo
    dark = image.astype(np.float32)
    for brow, eye in ((RIGHT_BROW, RIGHT_EYE), (LEFT_BROW, LEFT_EYE)):
        socket = polygon_mask(image.shape, np.concatenate([k[eye[:4]], k[brow][::-1]])).astype(np.float32)
        dark *= 1 - 0.45 * cv2.GaussianBlur(socket, (0, 0), 2)[..., None]
    dark = dark.astype(np.uint8)
    shut = shut_lids(k)
    gray = cv2.cvtColor(Renderer(dark, k).render(shut), cv2.COLOR_RGB2GRAY).astype(np.float64)
    for eye in (RIGHT_EYE, LEFT_EYE):
        lid = polygon_mask(image.shape, k[eye])
        under = polygon_mask(image.shape, k[eye] + [0, 0.45 * np.linalg.norm(k[eye[0]] - k[eye[3]])]) & ~lid
        assert gray[lid].mean() > 0.65 * gray[under].mean()


def test_a_glasses_rim_stays_in_front_of_a_closing_lid(photo):
    """Glasses (a bridge over the nose, a rim across the eye and past both its corners) are in front of the
    lid: a shut lid passes behind the rim and is not drawn above it (the lid's skin covered it with a patch)."""
    from ventriloquist.face.topology import LEFT_EYE, RIGHT_EYE
    image, k = at_twice(photo)
    rimmed = image.copy()
    rim, above = np.zeros(image.shape[:2], bool), np.zeros(image.shape[:2], bool)
    ends = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        a, b = k[eye[0]], k[eye[3]]
        width = float(np.linalg.norm(b - a))
        y = int(round(k[eye[1:3], 1].mean() - 0.2 * width))
        x0, x1 = int(min(a[0], b[0]) - 0.5 * width), int(max(a[0], b[0]) + 0.5 * width)
        rimmed[y - 1:y + 2, x0:x1] = (60, 40, 30)
        ends.append((x1 if eye is RIGHT_EYE else x0, y))
        rim[y - 1:y + 2, int(a[0] + 0.1 * (b[0] - a[0])):int(a[0] + 0.9 * (b[0] - a[0]))] = True
        above[y - int(0.3 * width):y - 3, int(a[0] + 0.2 * (b[0] - a[0])):int(a[0] + 0.8 * (b[0] - a[0]))] = True
    lenses = rimmed.copy()
    cv2.line(rimmed, ends[0], ends[1], (60, 40, 30), 3)               # the bridge over the nose
    shut = shut_lids(k)
    # lines across the eyes with no bridge between them are not taken for glasses: the lid covers them
    plain = Renderer(lenses, k)
    assert (np.abs(plain.render(shut).astype(int) - plain.render(k).astype(int)).sum(-1) > 30)[rim].mean() > 0.25
    renderer = Renderer(rimmed, k)
    open_, closed = renderer.render(k).astype(int), renderer.render(shut).astype(int)
    assert np.abs(closed[rim] - open_[rim]).mean() < 8                 # the rim is still there, whole
    assert np.abs(closed[above] - open_[above]).mean() < 3             # nothing drawn above it
    eyes = np.zeros(image.shape[:2], bool)
    for eye in (RIGHT_EYE, LEFT_EYE):
        eyes |= polygon_mask(image.shape, k[eye])
    assert np.abs(closed[eyes] - open_[eyes]).mean() > 10             # and with them it still shuts the eye


def test_the_gaze_moves_the_iris_against_the_lids(photo, renderer):
    """The eye's centre is a mesh point of its own: a gaze shift moves the dark iris by about as much
    against still lids, and leaves the eye outline and the rest of the face where they were; as the
    lids close the shift fades out, so a blink never folds the eye."""
    from ventriloquist.face.topology import LEFT_EYE, RIGHT_EYE
    from ventriloquist.face.topology import eye_centres
    image, k = photo
    eye = np.logical_or(polygon_mask(image.shape, k[RIGHT_EYE]), polygon_mask(image.shape, k[LEFT_EYE]))
    dotted = image.copy()                      # a black pupil dot at each eye's centre, to follow exactly
    for c in eye_centres(k):
        cv2.circle(dotted, (int(round(c[0] * 16)), int(round(c[1] * 16))), 2 * 16, (0, 0, 0), -1, cv2.LINE_AA, 4)
    dot = Renderer(dotted, k)

    def pupil_x(frame):
        w = np.where(eye, np.clip(40.0 - frame.astype(np.float64).max(2), 0, None), 0)
        return float((w * np.arange(frame.shape[1])[None]).sum() / w.sum())

    base = dot.render(k)
    shift = 0.1 * float(np.linalg.norm(k[39] - k[36]))
    looked = dot.render(k, np.array([shift, 0.0]))
    assert pupil_x(looked) - pupil_x(base) == pytest.approx(shift, rel=0.3)
    far = ~cv2.dilate(eye.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(looked[far], base[far])                     # the lids and the face stay put
    dst = renderer.mesh.vertices(k, np.array([100.0, 100.0]))          # a wild request is held inside the eye
    eyes = dst[renderer.mesh.i_eyes]
    for centre, idx in zip(eyes, (RIGHT_EYE, LEFT_EYE)):
        assert cv2.pointPolygonTest(k[idx].astype(np.float32), tuple(map(float, centre)), False) > 0
    shut = k.copy()
    from ventriloquist.face.topology import LID_PAIRS
    for up, down in LID_PAIRS:
        shut[up] = shut[down]
    np.testing.assert_allclose(renderer.mesh.vertices(shut, np.array([shift, shift]))[renderer.mesh.i_eyes],
                               renderer.mesh.vertices(shut)[renderer.mesh.i_eyes])


def test_teeth_keep_their_size_as_the_mouth_opens(photo):
    """Each lip keeps its own anchor: the upper teeth of an interior hang the same depth under the
    upper lip whether the mouth opens a little or twice as wide (the cavity between grows instead)."""
    from ventriloquist.render.mouth import S_SAMPLES, V_SAMPLES, InteriorLibrary, MouthPainter, inner_gaps
    image, k = photo
    tex = np.zeros((1, V_SAMPLES, S_SAMPLES, 3), np.uint8)
    tex[0, : V_SAMPLES // 3] = 255                                     # white teeth in the top third, black below
    lib = InteriorLibrary(tex, np.full((1, 3), 0.3, np.float32), np.full((1, S_SAMPLES), 0.3, np.float32),
                          np.zeros(1, np.int64), ["test"], *(np.full((1, 3), 200.0, np.float32),) * 3,
                          np.ones(1, np.float32), np.ones(1, np.float32))
    painter = MouthPainter(image, k, 10.0, lib)
    depths = []
    for amount in (0.25, 0.5):
        t = opened(k, amount)
        frame = image.copy()
        painter.paint(frame, t, t[INNER_LIPS[[0, 1, 2, 3, 4]]], t[INNER_LIPS[[0, 7, 6, 5, 4]]], np.zeros(3))
        x = int(round(t[62, 0]))
        column = frame[int(t[62, 1]):int(t[66, 1]), x].astype(float).mean(1)
        depths.append(int(np.sum(column > 128)))
        assert float(inner_gaps(t).mean()) > 0.1 and len(column) > 2 * depths[-1]
    assert depths[0] > 2 and abs(depths[1] - depths[0]) <= 2


def test_a_photos_own_upper_teeth_keep_their_height_as_the_jaw_opens(photo):
    """The demo photo smiles with its upper teeth: opened twice as wide, those teeth hang as deep under the upper
    lip as in the photo and the jaw opens below them, where they end, not through their middle."""
    from ventriloquist.render.mouth import MouthPainter, photo_teeth, upper_teeth_end
    image, k = at_twice(photo)
    teeth = photo_teeth(image, k)
    painter = MouthPainter(image, k, 10.0)
    assert painter.photo_teeth and 0.7 < float(painter.own.split[0]) < 0.9      # its smile shows upper teeth only
    photo_gap = float(k[66, 1] - k[62, 1])
    t = k.copy()
    t[LOWER_BLOCK, 1] += photo_gap                                               # opened to twice its own height
    frame = image.copy()
    painter.paint(frame, t, t[INNER_LIPS[[0, 1, 2, 3, 4]]], t[INNER_LIPS[[0, 7, 6, 5, 4]]], np.zeros(3))
    x = int(round(t[62, 0]))
    column = frame[int(np.ceil(t[62, 1])):int(t[66, 1]), x - 1:x + 2].astype(np.float64).mean(1)
    toothy = np.linalg.norm(column - teeth, axis=1) < 40
    start = int(np.argmax(toothy))                                               # past the lip's soft edge
    depth = int(np.argmin(toothy[start:])) if not toothy[start:].all() else len(toothy) - start
    assert depth >= 0.6 * photo_gap                                              # the whole row, not a third of it
    below = column[start + depth:start + depth + int(photo_gap / 2)].mean(1)
    assert below.mean() < column[start:start + depth].mean(1).mean() - 60       # and a dark opening below it
    # the split is where a row of teeth ends, read from the teeth's weight down the rows
    w = np.zeros((32, 64))
    w[3:20] = 1.0
    w[26:] = 1.0                                                                 # lower teeth after a gap
    assert upper_teeth_end(w) == 20 / 32
    assert upper_teeth_end(np.zeros((32, 64))) == 0.5


def test_a_photo_showing_teeth_closes_over_them(photo):
    """A photo with teeth (the demo smiles) closed to lips meeting shows no line of teeth: its inner-lip
    points are seated on the lips first, and the lips meet over the teeth."""
    from ventriloquist.face.detect import seat_inner_lips
    from ventriloquist.render.mouth import photo_teeth
    image, k = photo
    teeth = photo_teeth(image, k)
    assert teeth is not None
    seated = seat_inner_lips(image, k)
    assert np.all(seated[[61, 62, 63], 1] <= k[[61, 62, 63], 1])           # moved up off the upper teeth
    assert np.all(seated[[61, 62, 63], 1] > k[[50, 51, 52], 1])            # and stays inside the lip
    shut = seated.copy()
    for up, down in ((61, 67), (62, 66), (63, 65)):
        shut[up] = shut[down] = (seated[up] + seated[down]) / 2
    frame = Renderer(image, seated).render(shut)
    lips = polygon_mask(image.shape, shut[OUTER_LIPS])
    px = frame[lips].astype(np.float64)
    toothy = np.linalg.norm(px - teeth, axis=1) < 25
    unchanged = Renderer(image, seated).render(seated)[lips].astype(np.float64)
    assert toothy.mean() < 0.02 < (np.linalg.norm(unchanged - teeth, axis=1) < 25).mean()


def test_inner_lips_are_seated_past_the_dark_gaps_between_teeth(photo):
    """A dark line across the teeth (the gap between two teeth, a row's shadow) does not stop an inner-lip
    point halfway: it still reaches the lip's edge, so no strip of teeth is warped as lip (a dubbed video's
    closed mouth then shows no white line)."""
    import cv2

    from ventriloquist.face.detect import seat_inner_lips
    image, k = photo
    image = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)    # teeth ~25 px tall
    k = k * 4 + 1.5
    on_teeth = k.copy()
    on_teeth[61:64] += 0.4 * (k[[67, 66, 65]] - k[61:64])      # upper inner points put down on the teeth
    seated = seat_inner_lips(image, on_teeth)
    assert seated[62, 1] < on_teeth[62, 1] - 4 and abs(seated[62, 1] - k[62, 1]) < 6
    gapped = image.copy()
    y = int(round((on_teeth[62, 1] + seated[62, 1]) / 2))       # a 1-px dark line halfway up the teeth
    cv2.line(gapped, (int(on_teeth[61, 0]), y), (int(on_teeth[63, 0]), y), (60, 40, 40), 1)
    assert abs(seat_inner_lips(gapped, on_teeth)[62, 1] - seated[62, 1]) <= 1.0


def test_the_shipped_interiors_load_and_cover_the_openings():
    from ventriloquist.render.mouth import S_SAMPLES, V_SAMPLES, _chosen_speaker, default_library
    from ventriloquist.weights import manifest
    lib = default_library()
    assert "mouths" in manifest() and len(lib.speakers) >= 2
    assert lib.textures.shape[1:] == (V_SAMPLES, S_SAMPLES, 3) and lib.textures.dtype == np.uint8
    chosen = _chosen_speaker(lib)
    assert lib.gaps[lib.speaker == chosen].mean(1).max() > 0.4 and lib.gaps.min() >= 0


def _library(textures: np.ndarray, gaps: list[float], speaker: list[int], quality: list[float]):
    from ventriloquist.render.mouth import S_SAMPLES, InteriorLibrary
    n, m = len(textures), len(quality)
    return InteriorLibrary(textures.astype(np.uint8), np.repeat(np.asarray(gaps, np.float32)[:, None], 3, 1),
                           np.repeat(np.asarray(gaps, np.float32)[:, None], S_SAMPLES, 1), np.asarray(speaker, np.int64),
                           [f"s{i}" for i in range(m)], *(np.full((m, 3), 200.0, np.float32),) * 3,
                           np.ones(m, np.float32), np.asarray(quality, np.float32))


def test_the_speaker_whose_interiors_reach_widest_is_used():
    """Real speakers open wide: of the speakers whose interiors show well, the one reaching the widest
    opening is used (least stretched); one whose interiors barely show is not, however wide."""
    from ventriloquist.render.mouth import S_SAMPLES, V_SAMPLES, _chosen_speaker
    tex = np.zeros((6, V_SAMPLES, S_SAMPLES, 3))
    lib = _library(tex, [0.1, 0.3, 0.1, 0.45, 0.2, 0.6], [0, 0, 1, 1, 2, 2], [1.0, 0.8, 0.2])
    assert _chosen_speaker(lib) == 1


def test_a_cavity_takes_the_photos_lip_colour_however_dark():
    """A real mouth's inside is as red as its lips however dark (GRID and the wild clips: hue within 10
    degrees of the lips', chroma 0.6-1.2 of theirs at 0.2-0.7 of their lightness): a library speaker's warm
    cast must not turn it olive or grey in another photo's light."""
    import cv2

    from ventriloquist.render.mouth import S_SAMPLES, V_SAMPLES, _lab, match_colours

    def rgb(lab):
        return cv2.cvtColor(np.float32([[lab]]), cv2.COLOR_Lab2RGB)[0, 0] * 255
    # one GRID speaker, measured: orange lips under a warm light, its interior's dark half
    speaker_lips, cavity, speaker_teeth = rgb([47, 40, 43]), rgb([25, 26, 31]), rgb([55, 20, 42])
    tex = np.broadcast_to(cavity, (1, V_SAMPLES, S_SAMPLES, 3)).round().astype(np.uint8)
    photo_lips = rgb([46, 28, 10])                          # a wild clip's red lips
    out = match_colours(tex, speaker_teeth, speaker_teeth, speaker_lips, rgb([85, 3, 6]), photo_lips)
    got, lips = _lab(out[0, V_SAMPLES // 2, S_SAMPLES // 2])[0], _lab(photo_lips)[0]
    hue = lambda v: np.degrees(np.arctan2(v[2], v[1]))
    assert got[0] < 0.6 * lips[0]                           # still dark
    assert abs(hue(got) - hue(lips)) < 10
    assert np.hypot(*got[1:]) > 0.5 * np.hypot(*lips[1:])


def test_a_warm_lit_cavity_is_not_taken_for_teeth():
    """Under a warm light a cavity's RGB can be as bright as the teeth; its Lab lightness is not."""
    from ventriloquist.render.mouth import teeth_weight
    teeth, lips = np.array([182.0, 118.0, 59.0]), np.array([185.0, 79.0, 39.0])
    cavity = np.array([150.0, 60.0, 30.0])                  # RGB mean 80: above the old brightness bar
    w = teeth_weight(np.stack([teeth, cavity])[:, None], teeth, lips)
    assert w[0, 0, 0] > 0.9 and w[1, 0, 0] < 0.1


def test_a_photos_own_teeth_open_onto_a_real_interior(photo):
    """A photo that shows its teeth keeps them on its lips; opened far taller than its own interior, what
    shows between its rows is the library's interior (its texture, not one flat colour)."""
    from ventriloquist.render.mouth import S_SAMPLES, V_SAMPLES, MouthPainter
    image, k = photo
    tex = np.zeros((1, V_SAMPLES, S_SAMPLES, 3))
    tex[0, :, ::8] = 255                                    # stripes across the mouth: a texture to find
    painter = MouthPainter(image, k, 10.0, _library(tex, [0.5], [0], [1.0]))
    assert painter.photo_teeth
    t = opened(k, 0.5)
    frame = image.copy()
    painter.paint(frame, t, t[INNER_LIPS[[0, 1, 2, 3, 4]]], t[INNER_LIPS[[0, 7, 6, 5, 4]]], np.zeros(3))
    mid = int(round((t[62, 1] + t[66, 1]) / 2))
    x0, x1 = int(round(t[61, 0])), int(round(t[63, 0]))
    row = frame[mid, x0:x1].astype(np.float64).mean(1)
    assert row.std() > 10                                   # the stripes, where a flat cavity would be even
    top = frame[int(t[62, 1]) + 2, x0:x1].astype(np.float64)
    assert np.linalg.norm(top.mean(0) - row.mean()) > 30   # under the upper lip, still the photo's own teeth


def test_a_dubbed_video_fills_its_openings_with_its_own_interiors(photo):
    """A video that opens its mouth gives its own interiors (the sharpest frame per opening, lip rows cut),
    and the dub's painter shows them instead of the library's; a video that never opens gives none."""
    from ventriloquist.render import DubRenderer
    from ventriloquist.render.mouth import VIDEO_SIZE, VideoInteriors
    image, k = photo
    own, shut = VideoInteriors(), VideoInteriors()
    for amount in (0.0, 0.1, 0.2, 0.3, 0.4):
        t = opened(k, amount)
        frame = Renderer(image, k).render(t)
        cv2.fillPoly(frame, [np.round(t[INNER_LIPS]).astype(np.int32)], (40, 200, 40))     # a green mouth
        own.add(frame, t)
        closed = t.copy()
        closed[INNER_LIPS[[7, 6, 5]]] = closed[INNER_LIPS[[1, 2, 3]]]                   # lips meeting
        shut.add(frame, closed)
    assert shut.interiors() is None
    found = own.interiors()
    assert found is not None and found.textures.shape[1:3] == VIDEO_SIZE and len(found.gaps) >= 3
    assert np.all(np.diff(found.gaps) > 0)
    mid = found.textures[-1][VIDEO_SIZE[0] // 4: -VIDEO_SIZE[0] // 4, VIDEO_SIZE[1] // 4: -VIDEO_SIZE[1] // 4]
    assert mid[..., 1].mean() > 150 > mid[..., 0].mean()
    wide = opened(k, 0.35)
    dubbed = DubRenderer(interiors=found).render(image, k, wide)
    inside = cv2.erode(polygon_mask(image.shape, wide[INNER_LIPS]).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    g = dubbed[inside].astype(float)
    library = DubRenderer().render(image, k, wide)[inside].astype(float)
    assert (g[:, 1] - g[:, 0]).mean() > 60 > (library[:, 1] - library[:, 0]).mean()


def _spread(k: np.ndarray, s: float) -> np.ndarray:
    """``k`` with its lips spread across the face by share ``s`` of their width (narrowed where s < 0)."""
    lips = np.r_[OUTER_LIPS, INNER_LIPS]
    x = (k[45] - k[36]) / np.linalg.norm(k[45] - k[36])
    t = k.copy()
    t[lips] += s * np.outer((k[lips] - k[lips].mean(0)) @ x, x)
    return t


def test_a_read_lip_spread_is_drawn_as_large_as_a_reader_would_read_it(renderer, photo):
    from ventriloquist.render.warp import SPREAD_READ
    image, k = photo
    mesh = renderer.mesh
    # a still face and a moved head (turned, scaled, shifted) keep their lips' shape exactly
    assert np.allclose(mesh.vertices(k)[:68], k)
    rot = cv2.getRotationMatrix2D((float(k[30, 0]), float(k[30, 1])), 8.0, 1.1)
    rot[:, 2] += (5.0, -3.0)
    assert np.allclose(mesh.vertices(k @ rot[:, :2].T + rot[:, 2])[:68], k @ rot[:, :2].T + rot[:, 2], atol=1e-6)
    # a spread is drawn 1 / SPREAD_READ as wide; nothing else moves
    t = _spread(k, 0.1)
    drawn = mesh.vertices(t)[:68]
    assert np.linalg.norm(drawn[54] - drawn[48]) - np.linalg.norm(k[54] - k[48]) == pytest.approx(
        (np.linalg.norm(t[54] - t[48]) - np.linalg.norm(k[54] - k[48])) / SPREAD_READ, rel=0.02)
    assert np.allclose(drawn[:48], k[:48])
    # the mouth moved aside as a whole (a turn), or lifted and opened, is drawn as read
    for move in ((4.0, 0.0), (0.0, -3.0)):
        aside = k.copy()
        aside[48:] += move
        assert np.allclose(mesh.vertices(aside)[:68], aside, atol=1e-6)
    dropped = k.copy()
    dropped[LOWER_BLOCK] += 0.25 * interocular(k) * mesh.down                     # the jaw drops down the face
    assert np.allclose(mesh.vertices(dropped)[:68], dropped, atol=1e-6)


def test_dlib_reads_back_the_lip_spread_it_was_given(photo, renderer):
    """The reader that measured every motion we draw reads about all of a spread drawn with the renderer (as
    drawn without SPREAD_READ: 0.65 on this face, 0.60 over 21)."""
    from ventriloquist.face.detect import face_landmarks
    from ventriloquist.face.topology import mouth_width
    image, k = photo
    pairs = [(mouth_width(t), mouth_width(face_landmarks(renderer.render(t)).astype(np.float64)))
             for t in (_spread(k, s) for s in (-0.12, -0.06, 0.0, 0.06, 0.12))]
    slope = np.polyfit(*np.array(pairs).T, 1)[0]
    assert 0.85 < slope < 1.35


def test_a_shut_lid_covers_the_open_lids_corners(photo, monkeypatch):
    """A shut lid's top spans the eye in a flat arch as high as its crease, so near the corners it covers the open
    lid's shaded upper part too (the crease's own curve, pinned to the corners, rose like a tent beside it).
    Measured at dlib's corners: a lid reaching past them (CORNER_EXT) covers them with either curve."""
    import ventriloquist.render.eyes as eyes
    from ventriloquist.face.topology import LEFT_EYE, RIGHT_EYE
    monkeypatch.setattr(eyes, "CORNER_EXT", 0.0)
    image, k = at_twice(photo)
    shut = shut_lids(k)

    def covered() -> float:
        renderer = Renderer(image, k)
        changed = np.abs(renderer.render(shut).astype(int) - renderer.render(k).astype(int)).sum(-1) > 20
        share = []
        for eye in (RIGHT_EYE, LEFT_EYE):
            s, t, width = eye_coords(k, eye, image.shape)
            corners = ((s > 0.05) & (s < 0.25)) | ((s > 0.75) & (s < 0.95))
            share.append(changed[corners & (t > -0.3) & (t < -0.12)].mean())
        return float(np.mean(share))
    assert covered() > 0.9                                            # 0.96 on this photo
    monkeypatch.setattr(eyes, "_fold", lambda crease: crease)
    assert covered() < 0.85                                           # the crease's curve: 0.75


def test_a_shut_lid_reaches_past_the_corners_dlib_puts(photo, monkeypatch):
    """dlib puts the corners of small and deep-set eyes inside the real ones: a shut lid spans a little past them
    (CORNER_EXT), so the open eye's dark corner does not show beside it; and its lash line's edge is soft (a
    hard one-pixel edge read as a drawn slit)."""
    import ventriloquist.render.eyes as eyes
    from ventriloquist.face.topology import LEFT_EYE, RIGHT_EYE
    image, k = at_twice(photo)

    def drawn() -> tuple[float, float]:
        """Where the shut lid is drawn: its share just past the corners, and the pixels per column mid-eye where
        its lower edge is partly drawn (its alpha: the lid painted over a black and a white frame)."""
        renderer = Renderer(image, k)
        dst = renderer.mesh.vertices(shut_lids(k))
        over = []
        for level in (0, 255):
            frame = np.full_like(image, level)
            renderer.lids.paint(frame, dst[:68], dst[renderer.mesh.i_crease])
            over.append(frame.astype(float).mean(-1))
        alpha = 1 - (over[1] - over[0]) / 255
        past, edge = [], []
        for eye in (RIGHT_EYE, LEFT_EYE):
            s, t, width = eye_coords(k, eye, image.shape)
            outside = ((s > -0.08) & (s < -0.02)) | ((s > 1.02) & (s < 1.08))
            past.append((alpha[outside & (t > 0.03) & (t < 0.07)] > 0.5).mean())
            middle = (s > 0.4) & (s < 0.6) & (t > 0) & (t < 0.4)              # under the corners' line: the lid's edge
            partly = middle & (alpha > 0.1) & (alpha < 0.9)
            edge.append(partly.sum() / (0.2 * width))                        # pixels across the edge
        return float(np.mean(past)), float(np.mean(edge))
    past, soft = drawn()
    monkeypatch.setattr(eyes, "CORNER_EXT", 0.0)
    monkeypatch.setattr(eyes, "LASH_SOFT", 0.0)
    at_dlib, hard = drawn()
    assert past > 0.5 and at_dlib < 0.2
    assert soft > 1.5 * hard


def test_the_mesh_is_scipys_delaunay_without_scipy(photo):
    """The face mesh is triangulated with OpenCV (SciPy's import cost a cold process 0.3 s): the same triangles."""
    from scipy.spatial import Delaunay

    from ventriloquist.render.warp import MeshWarper, _delaunay
    image, k = photo
    mesh = MeshWarper(image.shape, k)
    rng = np.random.default_rng(0)
    for points in (mesh.src[: mesh.i_ring[-1] + 1], *(rng.uniform(0, 400, (n, 2)) for n in (12, 60, 120))):
        ours = {tuple(sorted(t)) for t in _delaunay(points).tolist()}
        assert ours == {tuple(sorted(t)) for t in Delaunay(points).simplices.tolist()}
    repeated = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [10, 10], [5, 4]], float)
    assert set(_delaunay(repeated).ravel().tolist()) <= {0, 1, 2, 3, 5}      # a repeated point is its first
