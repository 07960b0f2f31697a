"""Reading and writing videos, masks and images: the lowest layer of vivid, used by editing, long videos, data
loading, training and evaluation alike (it imports nothing else of vivid).

- `files`: `MediaError` (one line naming the file and the problem) and the file-name rules;
- `atomic`: the one atomic writer (a temporary file renamed into place), for files, JSON and videos, and the
  temporary folders vivid recognises by their name and marker file;
- `swap`: replacing a set of files in a folder recoverably from any point, with a manifest checked on reading;
- `limits`: the pixel limit on an input video or image, checked from its header before decoding;
- `video`: probing, frame timing, forward-only clip reading (`VideoSource`), decoding and the video writer (which
  renames its file into place only after ffmpeg succeeded and the file probes with every frame);
- `masks`: the one mask rule (`binarize_mask`) and mask reading in every encoding (`MaskSource`, `read_mask`);
- `images`: reading and writing single images;
- `resize`: the one frame resizer (`resize_frames`), cover-and-crop geometry and mask resizing.

Frames are uint8 RGB arrays (F, H, W, 3); masks are bool arrays (F, H, W) with True = edit.
"""
