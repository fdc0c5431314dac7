"""``emb convert guided-diffusion CKPT OUT_DIR``: an OpenAI guided-diffusion (ADM) checkpoint as a diffusers folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import print_error


def cmd_convert_guided_diffusion(args: argparse.Namespace) -> int:
    from benchmark.guided_diffusion import AdmArchitecture, CheckpointError, convert

    arch = AdmArchitecture(
        image_size=args.image_size,
        model_channels=args.num_channels,
        num_res_blocks=args.num_res_blocks,
        channel_mult=tuple(int(x) for x in args.channel_mult.split(",")),
        attention_resolutions=tuple(int(x) for x in args.attention_resolutions.split(",")),
        num_head_channels=args.num_head_channels,
    )
    try:
        out = convert(Path(args.checkpoint), Path(args.out_dir), arch)
    except CheckpointError as err:
        print_error(str(err))
        return 2
    print(f"converted {args.checkpoint} to {out} (DDPMPipeline layout); use it with model.pixel={out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_convert = sub.add_parser("convert", help="convert a checkpoint to a diffusers folder")
    kinds = p_convert.add_subparsers(dest="convert_kind", required=True)
    p_gd = kinds.add_parser(
        "guided-diffusion",
        help="an OpenAI guided-diffusion .pt (e.g. 256x256_diffusion_uncond.pt) as UNet2DModel + DDPMScheduler",
        description="The defaults are 256x256_diffusion_uncond.pt's architecture (Blended Diffusion's model). The "
        "checkpoint is read with torch.load(weights_only=True): one holding anything but tensors is refused.",
    )
    p_gd.add_argument("checkpoint", help="the .pt file (a state dict)")
    p_gd.add_argument("out_dir", help="folder to write (unet/, scheduler/, model_index.json)")
    p_gd.add_argument("--image-size", type=int, default=256)
    p_gd.add_argument("--num-channels", type=int, default=256)
    p_gd.add_argument("--num-res-blocks", type=int, default=2)
    p_gd.add_argument("--channel-mult", default="1,1,2,2,4,4")
    p_gd.add_argument("--attention-resolutions", default="32,16,8")
    p_gd.add_argument("--num-head-channels", type=int, default=64)
    p_gd.set_defaults(fn=cmd_convert_guided_diffusion)
