"""StyleGAN2 generator in pure PyTorch with NVIDIA's parameter names and shapes.

The module tree mirrors stylegan2-ada-pytorch (`mapping.fc0`, `synthesis.b64.conv0.affine`,
...), so `Generator(**init_kwargs).load_state_dict(G_ema_state_dict)` accepts an official
checkpoint's weights unchanged.  Only the unconditional, "skip" architecture is supported,
which covers every FFHQ generator the registry names.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from weights.config import GeneratorConfig
from weights.ops import LRELU_GAIN, bias_act, modulated_conv2d, setup_filter, upsample2d

NOISE_MODES = ("random", "const", "none")


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer (weights stored unscaled, scaled at run time)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The weight gain scales the product (a vector per sample), not the weight matrix:
        # one pass over the weights fewer in the forward and in the backward.
        w = self.weight.to(x.dtype)
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t(), alpha=self.weight_gain)
        return bias_act(x.matmul(w.t()) * self.weight_gain, b, act=self.activation, gain=LRELU_GAIN)


class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalisation, then `num_layers` leaky-ReLU FC layers."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.num_layers = cfg.mapping_layers
        self.num_ws = cfg.num_ws
        feats = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            setattr(
                self,
                f"fc{i}",
                FullyConnectedLayer(
                    feats[i], feats[i + 1], activation="lrelu", lr_multiplier=cfg.mapping_lr_multiplier
                ),
            )
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None
    ) -> torch.Tensor:
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up-sampling), noise, bias, leaky ReLU, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool,
        conv_clamp: Optional[float],
        resample_filter: Sequence[int],
    ) -> None:
        super().__init__()
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if noise_mode == "random":
            noise = (
                torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
            )
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        return modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            resample_filter=self.resample_filter,
            noise=noise,
            bias=self.bias,
            act="lrelu",
            gain=LRELU_GAIN,
            clamp=self.conv_clamp,
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: Optional[float]) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False, bias=self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | conv0 with up-sampling), conv1, torgb added to the up-sampled image."""

    def __init__(
        self, in_channels: int, out_channels: int, cfg: GeneratorConfig, resolution: int, use_fp16: bool
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter(cfg.resample_filter))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                cfg.w_dim,
                resolution,
                up=True,
                conv_clamp=cfg.conv_clamp,
                resample_filter=cfg.resample_filter,
            )
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            cfg.w_dim,
            resolution,
            up=False,
            conv_clamp=cfg.conv_clamp,
            resample_filter=cfg.resample_filter,
        )
        self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def dtype_for(self, device: torch.device, force_fp32: bool) -> torch.dtype:
        # fp16 only where the original uses it, and only on CUDA (CPU runs in float32).
        if self.use_fp16 and not force_fp32 and device.type == "cuda":
            return torch.float16
        return torch.float32

    @staticmethod
    def memory_format_for(device: torch.device, dtype: torch.dtype) -> torch.memory_format:
        # NHWC suits oneDNN on CPU (about 20% faster here) and tensor cores for fp16 on CUDA.
        if device.type == "cpu" or dtype == torch.float16:
            return torch.channels_last
        return torch.contiguous_format

    def features(self, x: Optional[torch.Tensor], ws: torch.Tensor, noise_mode: str, force_fp32: bool) -> torch.Tensor:
        """The block's feature map (before torgb); `ws` holds this block's conv ws."""
        dtype = self.dtype_for(ws.device, force_fp32)
        fmt = self.memory_format_for(ws.device, dtype)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            return self.conv1(x.contiguous(memory_format=fmt), ws[:, 0], noise_mode)
        x = x.to(dtype).contiguous(memory_format=fmt)
        x = self.conv0(x, ws[:, 0], noise_mode)
        return self.conv1(x, ws[:, 1], noise_mode)

    def forward(
        self,
        x: Optional[torch.Tensor],
        img: Optional[torch.Tensor],
        ws: torch.Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x, ws, noise_mode, force_fp32)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, ws[:, self.num_conv]).to(torch.float32)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """w (W+: [N, num_ws, w_dim]) -> image [N, C, R, R] in about [-1, 1]."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.img_resolution = cfg.img_resolution
        self.num_ws = cfg.num_ws
        self.block_resolutions = cfg.block_resolutions
        fp16_resolution = max(2 ** (int(math.log2(cfg.img_resolution)) + 1 - cfg.num_fp16_res), 8)
        for res in self.block_resolutions:
            in_ch = cfg.channels(res // 2) if res > 4 else 0
            block = SynthesisBlock(in_ch, cfg.channels(res), cfg, res, use_fp16=res >= fp16_resolution)
            setattr(self, f"b{res}", block)

    def block_names(self) -> List[str]:
        return [f"b{res}" for res in self.block_resolutions]

    def _check(self, ws: torch.Tensor, noise_mode: str) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must have shape [N, {self.num_ws}, w_dim], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False, return_features: Sequence[str] = ()
    ):
        """Render images; with `return_features`, also return {block name: feature map}."""
        self._check(ws, noise_mode)
        wanted = set(return_features)
        unknown = wanted - set(self.block_names())
        if unknown:
            raise ValueError(f"unknown synthesis blocks {sorted(unknown)}; have {self.block_names()}")
        feats: Dict[str, torch.Tensor] = {}
        x = img = None
        w_idx = 0
        for name in self.block_names():
            block = getattr(self, name)
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_conv + 1], noise_mode, force_fp32)
            w_idx += block.num_conv
            if name in wanted:
                feats[name] = x
        return (img, feats) if return_features else img

    def features(
        self, ws: torch.Tensor, block: str, noise_mode: str = "const", force_fp32: bool = False
    ) -> torch.Tensor:
        """Run only as far as `block` and return its feature map (no RGB, no higher blocks)."""
        self._check(ws, noise_mode)
        if block not in self.block_names():
            raise ValueError(f"unknown synthesis block {block!r}; have {self.block_names()}")
        x = None
        w_idx = 0
        for name in self.block_names():
            b = getattr(self, name)
            x = b.features(x, ws[:, w_idx : w_idx + b.num_conv], noise_mode, force_fp32)
            w_idx += b.num_conv
            if name == block:
                return x
        raise AssertionError("unreachable")


class Generator(nn.Module):
    """Mapping + synthesis, constructed from NVIDIA-style init kwargs."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        c_dim: int = 0,
        mapping_kwargs: Optional[dict] = None,
        synthesis_kwargs: Optional[dict] = None,
    ) -> None:
        super().__init__()
        cfg = GeneratorConfig.from_init_kwargs(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=mapping_kwargs or {},
                synthesis_kwargs=synthesis_kwargs or {},
            )
        )
        self.config = cfg
        self.z_dim, self.w_dim, self.c_dim = cfg.z_dim, cfg.w_dim, 0
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.num_ws = cfg.num_ws
        self.synthesis = SynthesisNetwork(cfg)
        self.mapping = MappingNetwork(cfg)

    @classmethod
    def from_config(cls, cfg: GeneratorConfig) -> "Generator":
        return cls(**cfg.to_init_kwargs())

    @property
    def init_kwargs(self) -> dict:
        return self.config.to_init_kwargs()

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: Optional[int] = None,
        noise_mode: str = "const",
        force_fp32: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """The latent NVIDIA's generate.py uses for `seed`: RandomState(seed).randn(1, z_dim)."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).to(torch.float32)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in about [-1, 1] -> [N, H, W, C] uint8, as the official tools convert."""
    img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.cpu().numpy()
