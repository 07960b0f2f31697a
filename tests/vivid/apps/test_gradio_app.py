"""The app's pieces without a browser: mask propagation by optical flow, the editor's mask, error messages."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vivid.apps.gradio_app import VividApp, editor_mask, propagate_mask, write_mask_video
from vivid.io.masks import read_mask
from vivid.io.video import write_video


def _square_video(n: int = 12, step: int = 3) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A textured square moving right over a textured background; returns frames and the square's corners."""
    rng = np.random.default_rng(0)
    background = (rng.random((64, 96, 3)) * 80).astype(np.uint8)
    square = (rng.random((20, 20, 3)) * 100 + 150).astype(np.uint8)
    frames, corners = [], []
    for t in range(n):
        f = background.copy()
        top, left = 22, 10 + step * t
        f[top : top + 20, left : left + 20] = square
        frames.append(f)
        corners.append((top, left))
    return np.stack(frames), corners


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_optical_flow_carries_the_mask_with_the_object():
    frames, corners = _square_video()
    first = np.zeros((64, 96), bool)
    first[22:42, 10:30] = True
    masks = list(propagate_mask(iter(frames), first))
    assert len(masks) == len(frames)
    top, left = corners[-1]
    truth = np.zeros((64, 96), bool)
    truth[top : top + 20, left : left + 20] = True
    assert _iou(masks[-1], truth) > 0.6
    assert _iou(masks[-1], first) < 0.2  # it moved; a static mask would not


def test_mask_video_static_and_flow(tmp_path):
    frames, _ = _square_video()
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    first = np.zeros((64, 96), bool)
    first[22:42, 10:30] = True
    static = read_mask(write_mask_video(tmp_path / "static.mp4", str(video), first, "static"))
    flow = read_mask(write_mask_video(tmp_path / "flow.mp4", str(video), first, "optical flow"))
    assert static.shape == flow.shape == (12, 64, 96)
    assert (static == first).all()
    assert _iou(flow[-1], first) < 0.2
    with pytest.raises(ValueError, match="mask mode"):
        write_mask_video(tmp_path / "x.mp4", str(video), first, "magic")


def test_editor_mask_reads_painted_layers_and_refuses_empty_ones():
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[10:20, 30:50, 3] = 255
    mask = editor_mask({"background": None, "layers": [layer], "composite": None}, 64, 96)
    assert mask.sum() == 200 and mask[15, 40]
    small = np.zeros((32, 48, 4), np.uint8)
    small[5:10, 15:25, 3] = 255  # the editor may send a scaled canvas
    assert editor_mask({"layers": [small]}, 64, 96)[15, 40]
    with pytest.raises(ValueError, match="paint"):
        editor_mask({"background": None, "layers": [], "composite": None}, 64, 96)
    with pytest.raises(ValueError, match="empty"):
        editor_mask({"layers": [np.zeros((64, 96, 4), np.uint8)]}, 64, 96)


def test_app_actions_fail_with_messages_in_the_wrong_order(tmp_path):
    app = VividApp(pipe=None, workdir=tmp_path)
    session = app.new_session()
    with pytest.raises(ValueError, match="upload a video first"):
        app.preview(session, None, "static", None, "add", "a ball", 2, 0)
    frames, _ = _square_video()
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    app.load_video(session, str(video))
    assert session.summary == "Loaded: 12 frames at 8 fps, 96x64."
    with pytest.raises(ValueError, match="preview keyframe candidates"):
        app.propagate(session, "add", "a ball", 0)
    with pytest.raises(ValueError, match="paint the mask"):
        app.preview(session, {"layers": []}, "static", None, "add", "a ball", 2, 0)
    bad = write_video(tmp_path / "m.mp4", np.full((3, 64, 96, 3), 255, np.uint8), 8, lossless=True)
    with pytest.raises(ValueError, match="mask has 3 frames but the video has 12"):
        app.preview(session, None, "static", str(bad), "add", "a ball", 2, 0)


# ----------------------------------------------------------------------------- several users (issue 20, #6 and #7)
class CountingPipe:
    """A fake pipeline that records how many calls run at once (each call takes a little while)."""

    def __init__(self):
        import threading

        self.lock, self.active, self.most, self.calls = threading.Lock(), 0, 0, 0

    def __call__(self, video, mask, **kwargs):
        import time
        from types import SimpleNamespace

        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        time.sleep(0.2)
        with self.lock:
            self.active -= 1
        return SimpleNamespace(frames=[np.full((1, *video.shape[1:]), 0.5, np.float32)])


def test_the_model_events_share_one_concurrency_group(tmp_path):
    from vivid.apps.gradio_app import MODEL_CONCURRENCY_ID, build_app

    demo = build_app(VividApp(pipe=None, workdir=tmp_path))
    fns = {fn.name: fn for fn in demo.fns.values()}
    for name in ("on_preview", "on_propagate", "on_keyframes", "on_accept"):  # the events that run the model
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == (MODEL_CONCURRENCY_ID, 1), name
    assert fns["on_video"].concurrency_id != MODEL_CONCURRENCY_ID  # loading a video waits for no edit
    assert "on_unload" in fns


def test_two_sessions_never_run_the_model_at_once(tmp_path):
    import threading

    pipe = CountingPipe()
    app = VividApp(pipe=pipe, workdir=tmp_path, steps=1, guidance=1.0)
    frames, _ = _square_video()
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[20:40, 10:30, 3] = 255
    results, errors = [], []

    def user(name):
        try:
            session = app.new_session(name)
            app.load_video(session, str(video))
            results.append(app.preview(session, {"layers": [layer]}, "static", None, "add", "a ball", 2, 0))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=user, args=(f"user{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2 and pipe.calls == 4
    assert pipe.most == 1  # one model call at a time over both sessions


def test_old_session_folders_are_removed_and_nothing_else(tmp_path):
    import os
    import time

    from vivid.apps.gradio_app import SESSIONS_DIR

    work = tmp_path / "work"
    work.mkdir()
    (work / "secret.txt").write_text("mine")
    app = VividApp(pipe=None, workdir=work, keep_hours=1)
    foreign = work / SESSIONS_DIR / "notes"  # in the sessions folder, but not a session the app made
    foreign.mkdir(parents=True)
    (foreign / "a.txt").write_text("mine too")
    old, young, other = app.new_session("a"), app.new_session("a"), app.new_session("b")
    (old.dir / "candidate.png").write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600
    for path in (old.dir / "candidate.png", old.dir / ".vivid-session", old.dir, foreign / "a.txt", foreign):
        os.utime(path, (hours_ago, hours_ago))
    assert app.remove_old_sessions() == [old.dir]
    assert not old.dir.exists() and young.dir.is_dir() and other.dir.is_dir()
    assert (foreign / "a.txt").read_text() == "mine too" and (work / "secret.txt").read_text() == "mine"
    app.end_sessions("a")  # the tab of "a" was closed: its folders go, b's stay
    assert not young.dir.exists() and other.dir.is_dir() and (foreign / "a.txt").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["secret.txt", SESSIONS_DIR]


def test_error_messages_name_files_by_base_name():
    from vivid.apps.gradio_app import _shows_errors, hide_paths

    @_shows_errors("status")
    def fails():
        raise ValueError("cannot read /srv/vivid/work/vivid-sessions/session-x/mask.mp4: not a video")

    assert fails() == {"status": "Error: cannot read mask.mp4: not a video"}
    assert hide_paths("'~/data/clip.mp4' and /tmp/gradio/abc/video.mp4") == "'clip.mp4' and video.mp4"
    assert hide_paths("mask has 3 frames but the video has 12 (3/4 of a/b)") == \
        "mask has 3 frames but the video has 12 (3/4 of a/b)"


def test_share_needs_auth_and_auth_is_user_pass(capsys):
    from vivid.apps.gradio_app import check_share, parse_auth
    from vivid.cli import main

    assert main(["app", "--model", "no-such-model", "--share"]) == 2  # refused before the model is loaded
    assert "--share makes the app public: give --auth USER:PASS" in capsys.readouterr().err
    for bad in ("user", ":pass", "user:", ""):
        with pytest.raises(ValueError, match="USER:PASS"):
            parse_auth(bad)
    assert parse_auth("me:se:cret") == ("me", "se:cret")
    check_share(True, ("me", "pw"))
    check_share(False, None)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app on a local port (fake pipeline, a login, a 1 MiB upload limit), a workdir holding a user's file."""
    import socket

    from vivid.apps.gradio_app import launch

    root = tmp_path_factory.mktemp("served")
    (root / "work").mkdir()
    (root / "work" / "secret.txt").write_text("not for the browser")
    frames, _ = _square_video()
    video = write_video(root / "v.mp4", frames, 8, lossless=True)
    masks = np.zeros((12, 64, 96, 3), np.uint8)
    masks[:, 20:40, 10:30] = 255
    mask = write_video(root / "m.mp4", masks, 8, lossless=True)
    app = VividApp(CountingPipe(), root / "work", steps=1, guidance=1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(app, port=port, block=False, auth=("me", "pw"), max_upload_mb=1)
    yield app, demo, f"http://127.0.0.1:{port}", video, mask
    demo.close()


def _status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_app_serves_what_it_returns_and_no_other_file(served, tmp_path):
    import http.cookiejar
    import urllib.error
    import urllib.parse
    import urllib.request

    from gradio_client import Client, handle_file

    app, demo, url, video, mask = served
    client = Client(url + "/", auth=("me", "pw"), verbose=False, download_files=str(tmp_path))
    client.predict(handle_file(str(video)), api_name="/on_video")
    gallery, chosen, _, status = client.predict(None, "static", [handle_file(str(mask))], "add", "a ball", 2, 0,
                                                api_name="/on_preview")
    assert len(gallery) == 2 and chosen == "Chosen: candidate 1 of 2" and status == ""  # returned files reach it
    assert Path(gallery[0]["image"]).stat().st_size > 0
    written = sorted(app.sessions_dir.glob("session-*/candidate-*.png"))
    assert len(written) == 2
    # logged in, a browser still gets neither the workdir's files nor the session folders' (another user's) files
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(url + "/login", data=urllib.parse.urlencode({"username": "me", "password": "pw"}).encode(), timeout=30)
    for path in (app.root / "secret.txt", written[0]):
        try:
            status = opener.open(f"{url}/gradio_api/file={path}", timeout=30).status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == 403, (path, status)
    assert _status(url + "/config") == 401  # no login, nothing
    assert demo.max_file_size == 1024 * 1024
    big = tmp_path / "big.npy"
    big.write_bytes(b"\0" * (2 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)maximum|too large|exceeds"):
        client.predict(None, "static", [handle_file(str(big))], "add", "a ball", 1, 0, api_name="/on_preview")


def test_closing_a_tab_removes_its_session_folders_and_serving_is_limited(tmp_path, monkeypatch):
    import tempfile
    from types import SimpleNamespace

    from vivid.apps.gradio_app import _allowed_paths, build_app

    app = VividApp(pipe=None, workdir=tmp_path / "work")
    mine, theirs = app.new_session("tab1"), app.new_session("tab2")
    unload = next(fn for fn in build_app(app).fns.values() if fn.name == "on_unload").fn
    unload(SimpleNamespace(session_hash="tab1"))  # what Gradio calls when tab1 is closed
    assert not mine.dir.exists() and theirs.dir.is_dir()
    # nothing of the workdir is served directly; a workdir outside the current and the temporary folder
    # (where Gradio takes returned files from) gets its session folders allowed, and only those
    assert _allowed_paths(app) == []
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "cwd"))
    assert _allowed_paths(app) == [str(app.sessions_dir.resolve())]


def test_the_app_previews_and_propagates_an_edit_with_either_base(family_pipe, tmp_path):
    """The app's two model actions on the real tiny pipeline of each base (CogVideoX, Wan2.1): keyframe candidates,
    then the chosen one propagated through the whole video, of the source's frame count and size."""
    from vivid.io.video import video_info

    _, out = preview_and_propagate(family_pipe, tmp_path)
    assert video_info(out)[0] == 9 and video_info(out)[2:] == (64, 96)


def session_with_video(app, tmp_path, n: int):
    """A session of `app` with an n-frame 64x96 video loaded, and the painted box layer the tests preview with:
    (session, the video's path, its frames, the layer)."""
    frames, _ = _square_video(n=n)
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[20:44, 8:32, 3] = 255
    session = app.new_session("local")
    app.load_video(session, str(video))
    return session, video, frames, layer


def preview_and_propagate(pipe, tmp_path):
    """A 9-frame 64x96 video, a box painted on frame 0, two candidates previewed (checked), the first propagated:
    (the source frames, the output path). The app on any base's tiny pipeline."""
    from vivid.io.images import read_image

    app = VividApp(pipe=pipe, workdir=tmp_path, steps=1, guidance=1.0)
    session, _, frames, layer = session_with_video(app, tmp_path, 9)
    candidates = app.preview(session, {"layers": [layer]}, "static", None, "add", "a red ball", 2, 0)
    assert len(candidates) == 2 and all(read_image(c).shape == (64, 96, 3) for c in candidates)
    return frames, app.propagate(session, "add", "a red ball", 0)


def test_the_app_shows_a_parallel_edits_keyframes_to_accept_with_either_base(family_pipe, tmp_path, monkeypatch):
    from vivid.model.weights import VIVIDWeightsConfig

    monkeypatch.setattr(family_pipe, "vivid_config", VIVIDWeightsConfig(kive_last_frame_prob=0.5))  # clips between
    keyframes_then_accept(family_pipe, tmp_path, monkeypatch)


def keyframes_then_accept(pipe, tmp_path, monkeypatch):
    """In the page: a 17-frame video (more than one clip of each tiny base), a box painted on frame 0, two
    candidates previewed; the keyframes of a parallel edit from the first edited jointly and shown as a strip
    (frame 0 the candidate; a new preview drops it), edited again with another seed (the new strip replaces the
    old, its work folder gone), then accepted: the clips run without editing the keyframes again, and the output is the one-shot parallel
    edit's, bit for bit. The app on any base's tiny pipeline that takes a last keyframe."""
    from vivid.apps.gradio_app import build_app
    from vivid.io.images import read_image
    from vivid.io.video import read_video
    from vivid.longvideo import parallel
    from vivid.longvideo.request import EditOptions, edit_request
    from vivid.longvideo.runner import chain_edit

    passes = []
    joint = parallel.edit_keyframes_jointly
    monkeypatch.setattr(parallel, "edit_keyframes_jointly", lambda *a, **k: passes.append(1) or joint(*a, **k))
    app = VividApp(pipe=pipe, workdir=tmp_path, steps=1, guidance=1.0)
    demo = build_app(app)
    ids, handlers = _components(demo), _handlers(demo)
    session, video, frames, layer = session_with_video(app, tmp_path, 17)
    no_progress = lambda *a, **k: None  # noqa: E731
    assert handlers["on_accept"](session, progress=no_progress) == {
        ids["status"]: "Error: edit the keyframes jointly first, then accept them"}
    preview = [session, {"layers": [layer]}, "static", None, "add", "a red ball", 2, 0]
    app.preview(*preview)
    handlers["on_keyframes"](session, "add", "a red ball", 2, progress=no_progress)
    dropped = session.strip["work_dir"]
    assert handlers["on_preview"](*preview, progress=no_progress)[ids["keyframe-strip"]] is None  # a new mask
    assert session.strip is None and not dropped.exists()
    handlers["on_keyframes"](session, "add", "a red ball", 1, progress=no_progress)
    replaced = session.strip["work_dir"]
    shown = handlers["on_keyframes"](session, "add", "a red ball", 0, progress=no_progress)
    strip = shown[ids["keyframe-strip"]]
    assert not replaced.exists() and session.strip["work_dir"].is_dir() and len(passes) == 3
    assert [caption for _, caption in strip][0] == "frame 0" and strip[-1][1] == "frame 16" and len(strip) >= 3
    np.testing.assert_array_equal(strip[0][0], read_image(session.candidates[0]))  # the chosen candidate
    assert shown[ids["status"]].startswith(f"{len(strip)} keyframes: accept them")
    done = handlers["on_accept"](session, progress=no_progress)
    accepted = Path(done[ids["result"]])
    assert done[ids["status"]] == f"Done: {accepted.name}" and done[ids["keyframe-strip"]] is None
    assert len(passes) == 3 and session.strip is None  # the keyframes were not edited again
    one_shot = chain_edit(pipe, edit_request(
        str(video), session.mask_video, "a red ball", "add", tmp_path / "one-shot.mp4",
        keyframe=str(session.candidates[0]),
        options=EditOptions(num_inference_steps=1, guidance_scale=1.0, seed=0, long_mode="parallel")))
    assert len(passes) == 4
    np.testing.assert_array_equal(read_video(accepted)[0], read_video(one_shot.path)[0])


def test_a_failed_accept_keeps_the_strip_to_accept_again(tiny_pipe, tmp_path, monkeypatch):
    """The model fails in the second clip after the keyframes were accepted: the strip and its work folder (the
    keyframes, the finished clip) stay, and accepting again finishes the edit without editing the keyframes again."""
    from vivid.io.video import video_info
    from vivid.longvideo import parallel
    from vivid.model.weights import VIVIDWeightsConfig
    from vivid.pipeline import VIVIDPipeline

    monkeypatch.setattr(tiny_pipe, "vivid_config", VIVIDWeightsConfig(kive_last_frame_prob=0.5))
    passes, calls = [], []
    joint, original = parallel.edit_keyframes_jointly, VIVIDPipeline.__call__
    monkeypatch.setattr(parallel, "edit_keyframes_jointly", lambda *a, **k: passes.append(1) or joint(*a, **k))

    def fails_in_the_second_clip(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")
        return original(self, *args, **kwargs)

    app = VividApp(pipe=tiny_pipe, workdir=tmp_path, steps=1, guidance=1.0)
    frames, _ = _square_video(n=17)  # two clips of the tiny model
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[20:44, 8:32, 3] = 255
    session = app.new_session("local")
    app.load_video(session, str(write_video(tmp_path / "v.mp4", frames, 8, lossless=True)))
    app.preview(session, {"layers": [layer]}, "static", None, "add", "a red ball", 1, 0)
    app.edit_keyframes(session, "add", "a red ball", 0)
    monkeypatch.setattr(VIVIDPipeline, "__call__", fails_in_the_second_clip)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        app.accept_keyframes(session)
    work = session.strip["work_dir"]
    assert sorted(p.name for p in work.glob("*.png")) == [  # frame 0's keyframe is the candidate
        "clip_00000_last.png", "keyframe_000008.png", "keyframe_000016.png"]
    out = app.accept_keyframes(session)
    assert len(passes) == 1 and len(calls) == 3 and not work.exists()  # the second clip alone ran again
    assert video_info(out)[0] == 17


# ----------------------------------------------------------------------------- masks, errors and choices in the page
def _components(demo) -> dict:
    """The app's components by their elem_id."""
    return {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}


def _handlers(demo) -> dict:
    return {fn.name: fn.fn for fn in demo.fns.values()}


def _square_mask(left: int) -> np.ndarray:
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[22:42, left : left + 20] = 255
    return frame


def test_png_and_image_folder_masks_are_accepted_as_in_the_cli(served, tmp_path):
    """A mask as one PNG (every frame) or as a folder's images (one per frame, uploaded in any order, read in name
    order) is taken from the page as `vivid edit --mask` takes it (`MaskSource`); a wrong one is one line."""
    from gradio_client import Client, handle_file

    from vivid.io.images import write_image

    app, demo, url, video, _ = served
    png = write_image(tmp_path / "mask.png", _square_mask(10))
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = [write_image(folder / f"frame-{t:02d}.png", _square_mask(10 + 3 * t)) for t in range(12)]
    client = Client(url + "/", auth=("me", "pw"), verbose=False, download_files=str(tmp_path))
    client.predict(handle_file(str(video)), api_name="/on_video")
    session = app._sessions[client.session_hash][-1]
    for upload in ([png], frames[::-1]):
        gallery, chosen, _, status = client.predict(None, "static", [handle_file(str(f)) for f in upload], "add",
                                                    "a ball", 2, 0, api_name="/on_preview")
        assert (len(gallery), chosen, status) == (2, "Chosen: candidate 1 of 2", ""), upload[0].name
        assert (read_mask(session.mask_video) == read_mask(upload[0] if len(upload) == 1 else folder)).all()
    *_, status = client.predict(None, "static", [handle_file(str(f)) for f in frames[:3]], "add", "a ball", 2, 0,
                                api_name="/on_preview")
    assert status == "Error: mask has 3 frames but the video has 12: give one mask per frame or a single mask"
    *_, status = client.predict(None, "static", [handle_file(str(png)), handle_file(str(video))], "add", "a ball", 2,
                                0, api_name="/on_preview")
    assert status == "Error: several mask files must all be images (one per frame, in name order); v.mp4 is not"


def test_an_error_stays_a_line_in_the_page_and_the_outputs_keep_their_values(served, tmp_path):
    """An error is returned into the page's status box (it stays there until the next action), not raised as a
    toast that vanishes and leaves "Error" badges on the outputs."""
    from gradio_client import Client

    app, demo, url, video, _ = served
    client = Client(url + "/", auth=("me", "pw"), verbose=False, download_files=str(tmp_path))  # no video yet
    *_, status = client.predict(None, "static", None, "add", "a ball", 2, 0, api_name="/on_preview")
    assert status == "Error: upload a video first"
    *_, status = client.predict("add", "a ball", 0, api_name="/on_propagate")
    assert status == "Error: upload a video first"


def test_a_candidate_that_does_not_exist_is_refused_in_the_page(tmp_path):
    from vivid.apps.gradio_app import build_app

    app = VividApp(pipe=None, workdir=tmp_path)
    demo = build_app(app)
    ids, on_select = _components(demo), _handlers(demo)["on_select"]
    session = app.new_session()
    session.candidates, session.chosen = [tmp_path / "a.png", tmp_path / "b.png"], 0
    for index, shown in ((5, "candidate 6"), (2, "candidate 3"), (-1, "candidate 0"), ("x", "'x'"), (True, "True")):
        assert on_select(session, SimpleNamespace(index=index)) == {
            ids["status"]: f"Error: there is no {shown}: choose one of the 2 candidates shown (1 to 2)"}
        assert session.chosen == 0  # the choice stays
    assert on_select(session, SimpleNamespace(index=1)) == {ids["chosen"]: "Chosen: candidate 2 of 2", ids["status"]: ""}
    assert session.chosen == 1
    session.video, session.mask_video = str(tmp_path / "v.mp4"), tmp_path / "m.mp4"
    session.chosen = 7  # however it came there, propagate refuses it before any work (the files are not read)
    with pytest.raises(ValueError, match="there is no candidate 8"):
        app.propagate(session, "add", "a ball", 0)
    assert on_select(app.new_session(), SimpleNamespace(index=0)) == {
        ids["status"]: "Error: preview keyframe candidates first, then click one to choose it"}


def test_a_failed_propagate_leaves_the_session_usable(tiny_pipe, tmp_path, monkeypatch):
    """The model fails during a propagate (an out-of-memory, say): the page shows one line, the session keeps its
    video, mask, candidates and choice, the failed edit's work files are gone, and the user picks another
    candidate and propagates again, without reloading."""
    from vivid.apps.gradio_app import build_app
    from vivid.io.video import video_info
    from vivid.pipeline import VIVIDPipeline

    app = VividApp(pipe=tiny_pipe, workdir=tmp_path, steps=1, guidance=1.0)
    demo = build_app(app)
    ids, handlers = _components(demo), _handlers(demo)
    frames, _ = _square_video(n=14)  # two clips of the tiny model
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[20:44, 8:32, 3] = 255
    session = app.new_session("local")
    app.load_video(session, str(video))
    candidates = app.preview(session, {"layers": [layer]}, "static", None, "add", "a red ball", 2, 0)
    before = sorted(session.dir.iterdir())

    original, calls = VIVIDPipeline.__call__, []

    def fails_in_the_second_clip(self, *args, **kwargs):
        calls.append(kwargs["video"].shape[0])
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VIVIDPipeline, "__call__", fails_in_the_second_clip)
    no_progress = lambda *a, **k: None  # noqa: E731
    shown = handlers["on_propagate"](session, "add", "a red ball", 0, progress=no_progress)
    assert shown == {ids["status"]: "Error: internal error (RuntimeError): CUDA out of memory. Tried to allocate 2.00 GiB"}
    assert len(calls) == 2  # the first clip was done, the second failed
    assert sorted(session.dir.iterdir()) == before  # nothing of the failed edit is left in the session
    assert (session.candidates, session.chosen) == (candidates, 0)

    assert handlers["on_select"](session, SimpleNamespace(index=1)) == {
        ids["chosen"]: "Chosen: candidate 2 of 2", ids["status"]: ""}
    shown = handlers["on_propagate"](session, "add", "a red ball", 0, progress=no_progress)
    out = Path(shown[ids["result"]])
    assert shown == {ids["result"]: str(out), ids["download"]: str(out), ids["status"]: f"Done: {out.name}",
                     ids["before-after"]: str(session.compare)}
    assert video_info(out)[0] == 14 and video_info(out)[2:] == (64, 96)


# ----------------------------------------------------------------------------- masks from clicks (classic segmenter)
def test_click_track_touch_up_preview_propagate_with_the_classic_segmenter(tiny_pipe, tmp_path):
    """A click on frame 4 shows the mask there at once; Track makes the session's mask video (the square followed
    through the video); a brush stroke on frame 0 is added to it; the edit previews and propagates with it, and the
    result comes with its before | after video."""
    from vivid.io.video import video_info

    app = VividApp(pipe=tiny_pipe, workdir=tmp_path, steps=1, guidance=1.0, segmenter="classic")
    frames, corners = _square_video(n=9)
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    session = app.new_session("local")
    app.load_video(session, str(video))
    top, left = corners[4]
    text, shown = app.click(session, 4, left - 2, top - 2, "box corner", "")
    assert session.corner == (left - 2, top - 2) and text == ""  # the first corner waits for the second
    text, shown = app.click(session, 4, left + 22, top + 22, "box corner", text)
    assert text == f"box {left - 2},{top - 2},{left + 23},{top + 23}" and session.corner is None
    truth = np.zeros((9, 64, 96), bool)
    for t, (y, x) in enumerate(corners):
        truth[t, y : y + 20, x : x + 20] = True
    assert _iou(session.maker.mask_on(4), truth[4]) > 0.8 and shown.shape == (64, 96, 3)
    overlay_video = app.track(session, "mask", 0)
    assert video_info(overlay_video)[0] == 9 and session.mask_video == session.tracked_mask
    tracked = read_mask(session.tracked_mask)
    assert np.mean([_iou(m, t) for m, t in zip(tracked, truth)]) > 0.7
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[50:60, 70:90, 3] = 255  # a touch-up outside the square, kept static
    candidates = app.preview(session, {"layers": [layer]}, "static", None, "modify", "a red square", 1, 0)
    used = read_mask(session.mask_video)
    assert used[:, 50:60, 70:90].all() and (used >= tracked).all() and len(candidates) == 1
    out = app.propagate(session, "modify", "a red square", 0)
    assert video_info(out)[0] == 9 and video_info(session.compare)[2:] == (64, 192)  # before | after


def test_mask_events_and_examples(tmp_path):
    from vivid.apps.gradio_app import MODEL_CONCURRENCY_ID, build_app, example_rows

    demo = build_app(VividApp(pipe=None, workdir=tmp_path, segmenter="classic"))
    fns = {fn.name: fn for fn in demo.fns.values()}
    for name in ("on_click", "on_show", "on_track"):  # the segmenter is a model too: one call at a time
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == (MODEL_CONCURRENCY_ID, 1), name
    rows = example_rows("classic")
    assert rows and all(Path(r[0]).is_file() and r[1].startswith("box ") and not r[2] for r in rows)
    assert all(not r[1] and r[2] for r in example_rows("sam3"))  # words for sam3
    assert "on_example" in fns
    with pytest.raises(ValueError, match="unknown segmenter"):
        VividApp(pipe=None, workdir=tmp_path, segmenter="sam9")


def test_vivid_app_takes_the_segmenter_and_its_weights(monkeypatch, tmp_path, capsys):
    """`vivid app --segmenter classic --segmenter-model tiny` reaches the app; an unknown segmenter is refused."""
    import vivid.apps.gradio_app as gradio_app
    import vivid.cli.app as cli_app
    from vivid.cli import main

    made = {}
    monkeypatch.setattr(cli_app, "load_pipeline", lambda args: None)
    monkeypatch.setattr(gradio_app, "launch", lambda app, **kw: made.setdefault("app", app))
    assert main(["app", "--model", "m", "--workdir", str(tmp_path), "--segmenter", "sam3",
                 "--segmenter-model", "tiny"]) == 0
    assert (made["app"].segmenter, made["app"].segmenter_model) == ("sam3", "tiny")
    with pytest.raises(SystemExit):
        main(["app", "--model", "m", "--segmenter", "sam9"])
    assert "invalid choice: 'sam9'" in capsys.readouterr().err
