"""`vivid data build`: a VIVID-10M-style data set from raw videos (docs/data_build.md).

Stages, one module each: `shots` (cuts, clips), `segment` (entities and masks), `filters`, `caption`, `images`,
`deletion`, `manifest`; `video` runs the per-video stages, `run` the whole build (sharding, resume, summary);
`models` loads the models, `tiny` writes their seeded tiny random versions.
"""

from .config import BuildConfig, load_build_config
from .run import build_dataset

__all__ = ["BuildConfig", "build_dataset", "load_build_config"]
