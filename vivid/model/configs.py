"""Architecture configs of the CogVideoX family: the published 5B and a tiny one of the same classes.

The 5B values are those of THUDM/CogVideoX-5b (text-to-video). The tiny family keeps every structural
feature (3D rotary embeddings, 8x/4x VAE, v-prediction with zero-terminal-SNR) at a size that trains on a CPU.
"""

from __future__ import annotations

COGVIDEOX_5B_TRANSFORMER = dict(
    num_attention_heads=48,
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    flip_sin_to_cos=True,
    freq_shift=0,
    time_embed_dim=512,
    text_embed_dim=4096,
    num_layers=42,
    dropout=0.0,
    attention_bias=True,
    sample_width=90,
    sample_height=60,
    sample_frames=49,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
    activation_fn="gelu-approximate",
    timestep_activation_fn="silu",
    norm_elementwise_affine=True,
    norm_eps=1e-5,
    spatial_interpolation_scale=1.875,
    temporal_interpolation_scale=1.0,
    use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False,
)

# Parameters of the stock CogVideoX-5B transformer (as cogvideox-factory reports for full fine-tuning).
COGVIDEOX_5B_TRANSFORMER_PARAMETERS = 5_570_283_072

COGVIDEOX_5B_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("CogVideoXDownBlock3D",) * 4,
    up_block_types=("CogVideoXUpBlock3D",) * 4,
    block_out_channels=(128, 256, 256, 512),
    latent_channels=16,
    layers_per_block=3,
    act_fn="silu",
    norm_eps=1e-6,
    norm_num_groups=32,
    temporal_compression_ratio=4,
    sample_height=480,
    sample_width=720,
    scaling_factor=0.7,
    use_quant_conv=False,
    use_post_quant_conv=False,
)

# CogVideoX-5b's scheduler: v-prediction, zero-terminal-SNR, trailing spacing.
COGVIDEOX_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=True,
    steps_offset=0,
    prediction_type="v_prediction",
    timestep_spacing="trailing",
    rescale_betas_zero_snr=True,
    snr_shift_scale=1.0,
)

# T5-v1.1-XXL encoder as used by CogVideoX.
T5_XXL = dict(
    d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, vocab_size=32128, feed_forward_proj="gated-gelu"
)

TINY_TRANSFORMER = dict(
    COGVIDEOX_5B_TRANSFORMER,
    num_attention_heads=4,
    attention_head_dim=16,
    time_embed_dim=64,
    text_embed_dim=64,
    num_layers=4,
    sample_width=12,  # latent cells: 96 px
    sample_height=8,  # 64 px
    sample_frames=9,
    max_text_seq_length=16,
)

# The pretrained tiny base's transformer (vivid/model/tiny_base): TINY_TRANSFORMER with
# - patch_size 1: one token per latent cell (a synthetic shape spans 3-5 cells, too few for 2x2 patches);
# - attention heads of 32 dims: CogVideoX's 3D rotary embedding gives a head 3/8 of its dims per spatial axis, so
#   16-dim heads see a position through one usable frequency (1 radian per cell, period ~6 cells) and cannot tell
#   where in a box a cell lies; with 32 dims they have two.
TINY_BASE_OVERRIDES = dict(patch_size=1, attention_head_dim=32, num_attention_heads=4)

TINY_VAE = dict(
    COGVIDEOX_5B_VAE,
    block_out_channels=(16, 32, 32, 32),
    layers_per_block=1,
    norm_num_groups=8,
    sample_height=64,
    sample_width=96,
    scaling_factor=1.0,
)

TINY_T5 = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, relative_attention_num_buckets=8)

# ---------------------------------------------------------------- Wan2.1
# The transformer configs of Wan-AI/Wan2.1-T2V-1.3B-Diffusers and Wan-AI/Wan2.1-T2V-14B-Diffusers, as diffusers'
# scripts/convert_wan_to_diffusers.py writes them (Wan-T2V-1.3B, Wan-T2V-14B); the rest are
# WanTransformer3DModel's defaults (rope_max_seq_len=1024, no image embedding).
WAN21_1_3B_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
)

WAN21_14B_TRANSFORMER = dict(WAN21_1_3B_TRANSFORMER, num_attention_heads=40, ffn_dim=13824, num_layers=40)

# Parameters of the stock transformers (Wan-AI/Wan2.1-T2V-1.3B-Diffusers, -14B-Diffusers)
WAN21_1_3B_TRANSFORMER_PARAMETERS = 1_418_996_800
WAN21_14B_TRANSFORMER_PARAMETERS = 14_288_491_584

# The Wan2.1 VAE (both sizes share it): AutoencoderKLWan's defaults, which are the published ones, including the
# per-channel latents_mean / latents_std that normalise its latents.
WAN21_VAE = dict(
    base_dim=96,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    attn_scales=[],
    temperal_downsample=[False, True, True],  # (sic) diffusers' spelling; lists: the VAE concatenates them
    dropout=0.0,
)

# The sampler the Wan2.1 T2V folders ship: UniPC on flow-matching sigmas, shift 3 (diffusers' docs: 3.0 for 480p,
# 5.0 for 720p).
WAN21_SCHEDULER = dict(
    num_train_timesteps=1000,
    prediction_type="flow_prediction",
    use_flow_sigmas=True,
    flow_shift=3.0,
)

# UMT5-XXL encoder (google/umt5-xxl) as used by Wan2.1: gated-GELU feed-forward, 256384-token vocabulary.
UMT5_XXL = dict(
    d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, vocab_size=256384, feed_forward_proj="gated-gelu"
)

# The tiny Wan family: every structural feature of Wan2.1 (3D RoPE split over t/h/w, (1, 2, 2) patches, cross-
# attention to UMT5, causal 4x/8x VAE with per-channel latent normalisation, flow matching) at a CPU size.
TINY_WAN_TRANSFORMER = dict(
    WAN21_1_3B_TRANSFORMER,
    num_attention_heads=4,
    attention_head_dim=24,  # RoPE: 8 channels each for time, height and width
    text_dim=64,
    freq_dim=64,
    ffn_dim=128,
    num_layers=4,
)

TINY_WAN_VAE = dict(
    WAN21_VAE,
    base_dim=8,
    num_res_blocks=1,
    latents_mean=[0.0] * 16,  # a random VAE has no latent statistics to undo (as TINY_VAE's scaling_factor=1)
    latents_std=[1.0] * 16,
)

TINY_UMT5 = dict(
    d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
    feed_forward_proj="gated-gelu",
)

# Wan2.1-VACE (Wan-AI/Wan2.1-VACE-1.3B-diffusers, -14B-diffusers): the Wan2.1 transformer with VACE's context blocks
# beside the DiT blocks listed in `vace_layers`, fed 96 context channels (inactive | reactive latents, 16 each, and the
# 8x8-pixel mask cells, 64). The values are those diffusers' scripts/convert_wan_to_diffusers.py writes for
# "Wan-VACE-1.3B" and "Wan-VACE-14B" (`get_transformer_config`): the T2V transformer of the same size, VACE blocks
# beside every 2nd DiT block of 30 (1.3B) and every 5th of 40 (14B); pinned by tests/vivid/model/test_vace_spec.py.
WAN21_VACE_1_3B_TRANSFORMER = dict(WAN21_1_3B_TRANSFORMER, vace_layers=list(range(0, 30, 2)), vace_in_channels=96)
WAN21_VACE_14B_TRANSFORMER = dict(WAN21_14B_TRANSFORMER, vace_layers=list(range(0, 40, 5)), vace_in_channels=96)
TINY_VACE_TRANSFORMER = dict(TINY_WAN_TRANSFORMER, vace_layers=[0, 2], vace_in_channels=96)
