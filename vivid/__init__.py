"""vivid: trainable video local editing (add, modify, delete) on CogVideoX with LoRA and KIVE."""

__version__ = "0.1.0"

__all__ = ["VIVIDPipeline", "VIVIDPipelineOutput", "__version__"]


def __getattr__(name: str):  # keep `import vivid` light: torch/diffusers load on first use
    if name in ("VIVIDPipeline", "VIVIDPipelineOutput"):
        from vivid import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'vivid' has no attribute {name!r}")
