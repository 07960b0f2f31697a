"""Editing videos of any length clip by clip, with KIVE chaining, streaming I/O and resume.

A long video is cut into clips of 4k+1 frames (at most the model's clip length by its base's rule,
`model_clip_frames`: 49 for CogVideoX-5B, 81 for Wan2.1). Neighbouring clips of one shot share their boundary
frame: the last edited frame of a clip is the keyframe (KIVE) of the next, so the edit is carried through the
video. A clip after a hard cut starts afresh. The first clip's keyframe can be given by the user, or chosen (the most representative
frame of the first clip, `vivid.longvideo.boundaries.representative_frame`) and edited alone first; a keyframe inside the
first clip is propagated backward (the clip's frames reversed) and forward from there.

Frames are decoded per clip and each finished clip is written at once to a work folder beside the output
(`<out>.work/`: one lossless video and the clip's last edited frame as PNG per clip, and `state.json`, all
written atomically). A killed edit run again with the same arguments resumes after its last finished clip;
the output is assembled by streaming the clip files into the final video, so memory does not grow with length.
Clip i is sampled with seed `seed + i`, so a resumed edit is the edit that would have run uninterrupted.
A video of at most one clip is the plan of one clip: `vivid edit` edits every video and image this way.

Modules: `plan` (the clips of an edit and their keyframes), `state` (the work folder: finished clips and the
state that resumes an edit), `runner` (`chain_edit`: the clip runner, for one clip as for thousands) and
`assemble` (streaming the finished clips into the output); `joint_keyframes` (editing the keyframes of a long
edit together, AdaFlow's extended attention slimmed by AAS: `edit_keyframes_jointly`).
"""
