"""Segmentation: masks from clicks, boxes and words, for editing (`vivid mask`, `vivid edit --target`) and for
building data sets (`vivid data build`).

- `sam`: the data build's text segmenters (SAM 3; Grounding DINO + SAM 2) over a clip held in memory;
- `trackers`: prompt-frame segmenters streamed through a video (SAM 2 clicks/boxes, SAM 3 words, `classic`);
- `make`: one prompt -> a mask file (video, PNG folder or .npz) of the video's frame count, size and fps;
- `shaping`: mask -> hull / box, grown by a radius (also VIVID's training-time mask augmentations);
- `loading`, `tiny`: models by hub id, folder or "tiny" (seeded random models of the same classes).
"""
