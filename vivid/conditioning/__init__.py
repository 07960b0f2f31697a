"""What the model is conditioned on, as tensors and sizes: the masked video, KIVE substitution and the mask
packed to latent channels (`mask_tensors`), the working size and the paste-back of the edit (`preprocess`), and
the aspect-ratio training sizes (`buckets`)."""
