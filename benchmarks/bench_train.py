"""Training benchmark: one VIVID LoRA step (the trainer's own `train.step.TrainStep`) vs a step in the style of
diffusers' CogVideoX LoRA example (stock 16-channel transformer, same LoRA, pre-encoded latents), same process, same shape.

    python benchmarks/bench_train.py --size tiny
    python benchmarks/bench_train.py --size 5b --gradient-checkpointing --attention-backend auto --compile --json

Rows: stock LoRA step (latents and prompt embeddings precomputed, as the example does with its cached
tensors); VIVID step on pre-encoded latents + conditions (the spec's loss: the same work plus 20 condition
channels); the trainer's full step (`TrainStep.loss`: VAE encodes of the video and the masked video inside the
step), then backward, clipping and the optimizer step as the trainer's accelerator does them on one process;
and the trainer's step on the same batch drawn for joint keyframe training (`joint_keyframe_prob` 1: 4 of its
frames as one-frame edits under the joint keyframe attention, checkpointed with it under
--gradient-checkpointing).
Prompt embeddings are precomputed (random, T5 is not loaded: the trainer's `caption_embeddings` mode). MFU = analytic model FLOPs of the transformer's
forward + backward (vivid.flops.cogvideox.transformer_train_flops, no recomputation counted) / step time / matmul FLOP/s.
On CPU each configuration runs in its own Python process (--no-isolate to share one), so that its peak memory
(the process's max RSS, which never goes down) is its own.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch

from common import (
    add_isolation_arguments,
    add_shape_arguments,
    build_components,
    clock_name,
    default_dtype,
    measure_peak_flops,
    median,
    new_transformer,
    peak_memory,
    pick_device,
    print_report,
    run_isolated,
    shape_of_run,
    sync,
    timer,
    wants_isolation,
)

from vivid.flops.cogvideox import transformer_train_flops
from vivid.model.cogvideox_spec import CogVideoXSpec, rotary_embeddings
from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, TINY_TRANSFORMER
from vivid.speed import ATTENTION_BACKENDS, compile_blocks, set_attention_backend


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(p)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    p.add_argument("--lora-rank", type=int, default=32)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--attention-backend", choices=ATTENTION_BACKENDS, default=None)
    p.add_argument("--compile", action="store_true", help="regional torch.compile of the blocks (both models)")
    p.add_argument("--optimizer", choices=["adamw", "adamw8bit"], default="adamw")
    p.add_argument("--no-full-step", dest="full_step", action="store_false",
                   help="skip the trainer's full step (with VAE encoding)")
    p.add_argument("--json", action="store_true")
    add_isolation_arguments(p, CONFIGS)
    return p.parse_args(argv)


CONFIGS = ("stock", "vivid-pre-encoded", "vivid-full-step", "vivid-joint-keyframes")


def selected_configs(args: argparse.Namespace) -> list[str]:
    """The configurations this run measures, in order (the first, stock, is the baseline of the ratios)."""
    if args.only is not None:
        return [args.only]
    return [c for c in CONFIGS if c not in ("vivid-full-step", "vivid-joint-keyframes") or args.full_step]


def make_optimizer(params, kind: str):
    if kind == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as err:
            raise SystemExit("--optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes)") from err
        return bnb.optim.AdamW8bit(params, lr=1e-4)
    return torch.optim.AdamW(params, lr=1e-4, fused=params[0].is_cuda)


SPEC = CogVideoXSpec()


def prepare(transformer, args, device, vivid: bool):
    if vivid:
        SPEC.make_vivid(transformer, rank=args.lora_rank, alpha=args.lora_rank)
    else:  # diffusers' example: LoRA on to_q/k/v/out.0, everything else frozen
        transformer.requires_grad_(False)
        transformer.add_adapter(SPEC.lora_config(args.lora_rank, args.lora_rank))
    transformer.train()
    for p in transformer.parameters():  # trainable parameters in float32, as the example upcasts them
        if p.requires_grad:
            p.data = p.data.float()
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if args.attention_backend:
        set_attention_backend(transformer, args.attention_backend)
    if args.compile:
        compile_blocks(transformer)
    return transformer


def stock_lora_step(transformer, scheduler, latents, prompt_embeds, optimizer, generator, autocast):
    """diffusers' train_cogvideox_lora.py inner loop, in short: noise, v-prediction -> x0, weighted MSE."""
    b, t, _, h, w = latents.shape
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), device=latents.device,
                              generator=generator).long()
    noise = torch.randn(latents.shape, device=latents.device, dtype=latents.dtype, generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    rotary = rotary_embeddings(transformer, h * 8, w * 8, t, latents.device)
    with torch.autocast(latents.device.type, dtype=autocast, enabled=autocast is not None):
        pred = transformer(hidden_states=noisy, encoder_hidden_states=prompt_embeds, timestep=timesteps,
                           image_rotary_emb=rotary, return_dict=False)[0]
    pred = scheduler.get_velocity(pred.float(), noisy.float(), timesteps)
    weights = (1 / (1 - scheduler.alphas_cumprod.to(latents.device)[timesteps])).view(b, 1, 1, 1, 1)
    loss = (weights * (pred - latents.float()) ** 2).reshape(b, -1).mean(1).mean()
    loss.backward()
    params = [p for p in transformer.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def timed_steps(name: str, step, device: torch.device, n: int) -> dict:
    step()  # warm-up: compilation, allocator, optimizer state
    row: dict = {"name": name}
    times = []
    clock = timer(device)  # wall on a GPU, process CPU time on a CPU
    with peak_memory(device, row):
        for _ in range(n):
            sync(device)
            t0 = clock()
            step()
            sync(device)
            times.append(clock() - t0)
    row["step_s"] = median(times)
    row["total_s"] = sum(times)
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.size, args.device)
    configs = selected_configs(args)
    title = "training: VIVID LoRA step vs stock CogVideoX LoRA step"
    if wants_isolation(args, device, configs):
        rows, extra = run_isolated(__file__, list(sys.argv[1:] if argv is None else argv), configs)
        print_report(title, rows, rows[0]["name"], extra, args.json)
        return 0
    dtype = default_dtype(device)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    frames, height, width = shape_of_run(args)
    tr_config = COGVIDEOX_5B_TRANSFORMER if args.size == "5b" else TINY_TRANSFORMER
    peak = measure_peak_flops(device, dtype)
    b = args.batch_size

    from train.step import TrainStep

    comps = build_components(args.size, device, dtype, text_encoder=False)
    vae, scheduler = comps["vae"], comps["scheduler"]
    vae.requires_grad_(False)
    gen = torch.Generator(device=device).manual_seed(0)
    video = torch.randint(0, 256, (b, frames, 3, height, width), dtype=torch.uint8, device=device, generator=gen)
    mask = torch.zeros(b, frames, 1, height, width, dtype=torch.uint8, device=device)
    mask[..., height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    batch = {"video": video, "masked_video": video * (1 - mask), "mask": mask, "prompt": ["a red ball"] * b}
    prompt_embeds = torch.randn(b, tr_config["max_text_seq_length"], tr_config["text_embed_dim"], device=device,
                                dtype=dtype, generator=gen)
    # the trainer's step with precomputed caption embeddings (its `caption_embeddings` mode)
    # (a joint keyframe step asks for each video's caption once per keyframe, in the batch's order)
    train_step = TrainStep(SPEC, vae, scheduler, device,
                           captions=lambda prompts, device: prompt_embeds.repeat_interleave(len(prompts) // b, 0))
    latents, conditions = train_step.encode_batch(batch, gen)  # the pre-encoded tensors of the first two rows
    rows = []

    stock_flops = transformer_train_flops(tr_config, frames, height, width, b, in_channels=16,
                                          lora_rank=args.lora_rank)["total"]
    vivid_flops = transformer_train_flops(tr_config, frames, height, width, b, lora_rank=args.lora_rank)["total"]
    if "stock" in configs:
        stock = prepare(new_transformer(args.size, device, dtype, 20), args, device, vivid=False)
        opt = make_optimizer([p for p in stock.parameters() if p.requires_grad], args.optimizer)
        rows.append(timed_steps(
            "stock CogVideoX LoRA step",
            lambda: stock_lora_step(stock, scheduler, latents, prompt_embeds, opt, gen, autocast),
            device, args.steps))
        rows[-1]["mfu"] = stock_flops / rows[-1]["step_s"] / peak
        del stock, opt

    if any(c.startswith("vivid") for c in configs):
        vivid = prepare(new_transformer(args.size, device, dtype, 20), args, device, vivid=True)
        opt = make_optimizer([p for p in vivid.parameters() if p.requires_grad], args.optimizer)

    def backward_and_step(loss):  # what the trainer's accelerator does on one process
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in vivid.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def vivid_pre_encoded():
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss = SPEC.compute_loss(vivid, scheduler, latents, conditions, prompt_embeds, gen)
        backward_and_step(loss)

    def trainer_step(step=train_step):
        amp = torch.autocast(device.type, dtype=autocast, enabled=autocast is not None)
        backward_and_step(step.loss(vivid, batch, gen, amp))

    if "vivid-pre-encoded" in configs:
        rows.append(timed_steps("vivid step (pre-encoded latents)", vivid_pre_encoded, device, args.steps))
        rows[-1]["mfu"] = vivid_flops / rows[-1]["step_s"] / peak
    if "vivid-full-step" in configs:
        rows.append(timed_steps("vivid trainer step (+ VAE encode)", trainer_step, device, args.steps))
        rows[-1]["mfu"] = vivid_flops / rows[-1]["step_s"] / peak  # VAE FLOPs not counted
    if "vivid-joint-keyframes" in configs:
        joint_step = replace(train_step, joint_keyframe_prob=1.0)
        rows.append(timed_steps("vivid joint keyframe step", lambda: trainer_step(joint_step), device,
                                args.steps))
        # as 4 b one-frame samples: the attention to the other keyframes' keys is not counted
        joint_flops = transformer_train_flops(tr_config, 1, height, width, 4 * b, lora_rank=args.lora_rank)["total"]
        rows[-1]["mfu"] = joint_flops / rows[-1]["step_s"] / peak
    extra = {
        "size": args.size, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "dtype": str(dtype).replace("torch.", ""), "shape": f"{b}x{frames}x{height}x{width}",
        "lora_rank": args.lora_rank, "gradient_checkpointing": args.gradient_checkpointing,
        "attention_backend": args.attention_backend, "compile": args.compile, "optimizer": args.optimizer,
        "matmul_peak_tflops": peak / 1e12, "train_tflops_per_step_vivid": vivid_flops / 1e12,
        "train_tflops_per_step_stock": stock_flops / 1e12,
        "isolated": False, "clock": clock_name(device),
    }
    print_report(title, rows, rows[0]["name"], extra, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
