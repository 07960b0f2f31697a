"""The applications on top of the pipeline and the trainer: the Gradio app (`gradio_app`) and the export of
trained weights to a self-contained model folder or the Hub (`export`). `vivid eval` is its sibling,
vivid/evaluation/."""
