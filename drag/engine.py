"""The DragGAN loop as a plain engine: `state = engine.step(state)` until `state.done`.

Each step: render the `b128` features for the current latent, track the handles (nearest
initial feature within r2), and take one Adam step on w[:, :6] (DragConfig.latent "w": on one
vector broadcast to those six layers, as DragGAN's GUI does in W) against the motion supervision
loss (+ the mask term).  The engine holds no UI state; a callback sees every step, so a command
line, a progress bar or a web page can drive it.

Fast path (DragConfig.loop "fast", the default): the synthesis runs only up to `b128` (later
blocks cannot change the loss) and features are sampled bilinearly straight from the 128x128
map.  The official loop ("official") renders the whole image and resizes the whole feature map
to image size every step, as DragGAN's code does; tests hold it to that loop step for step and
compare the two (they agree exactly where the map is image-sized, and drift apart above it: a
bilinear sample of the resized map is not a bilinear sample of the map).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from drag import features as ops
from drag.config import DragConfig
from weights.networks import Generator, to_uint8


@dataclass
class DragState:
    step: int
    w: torch.Tensor  # [1, num_ws, w_dim], detached copy of the current latent
    handles: torch.Tensor  # [N, 2] (x, y), aligned pixels
    distances: List[float]
    done: bool = False
    reason: Optional[str] = None  # why it ended: one of drag.record.STOP_REASONS (all but "stopped")
    loss: float = float("nan")
    history: List[float] = field(default_factory=list)  # total distance after each step


class DragEngine:
    def __init__(
        self,
        G: Generator,
        w_pivot: torch.Tensor,
        handles,
        targets,
        mask: Optional[np.ndarray] = None,
        config: DragConfig = DragConfig(),
    ) -> None:
        self.G = G.eval().requires_grad_(False)
        self.cfg = config
        self.fast = config.loop == "fast"
        self.size = G.img_resolution
        device = w_pivot.device
        self.device = device
        self.w0 = w_pivot.detach().clone()
        self.handles0 = torch.as_tensor(np.asarray(handles, dtype=np.float32), device=device).reshape(-1, 2)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32), device=device).reshape(-1, 2)
        if self.handles0.shape != self.targets.shape or len(self.handles0) == 0:
            raise ValueError("need one target per handle and at least one pair")
        self.mask = None if mask is None else torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)
        names = G.synthesis.block_names()
        # b128 for every FFHQ model; smaller (test) generators use their last block
        self.block = config.feature_block if config.feature_block in names else names[-1]
        self.r1 = ops.scale_radius(config.r1, self.size)
        self.r2 = ops.scale_radius(config.r2, self.size)
        self.reach = config.stop_distance(len(self.handles0))
        # W+: each of the first `layers` vectors; W: one vector (the first layer's) shared by them
        head = self.w0[:, : config.layers] if config.latent == "w+" else self.w0[:, :1]
        self.w_opt = head.clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.w_opt], lr=config.lr)
        with torch.no_grad():
            feat0 = self._features(self.w0)
            self.feat0 = feat0.detach()
            self.refs = self._sample(self.feat0, self.handles0).detach()

    # features -------------------------------------------------------------
    def _ws(self) -> torch.Tensor:
        head = self.w_opt.expand(-1, self.cfg.layers, -1)  # W+: already that shape
        return torch.cat([head, self.w0[:, self.cfg.layers :]], dim=1)

    def _features(self, ws: torch.Tensor) -> torch.Tensor:
        if self.fast:
            feat = self.G.synthesis.features(ws, self.block, noise_mode="const")
            return feat.float()
        _, feats = self.G.synthesis(ws, noise_mode="const", return_features=[self.block])
        # the official loop: the whole map resized to image size every step
        return F.interpolate(feats[self.block].float(), size=(self.size, self.size), mode="bilinear")

    def _sample(self, feat: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        return ops.sample(feat, pts, self.size)  # also exact on the resized map (integer points)

    # the loop -------------------------------------------------------------
    def start(self) -> DragState:
        d = (self.handles0 - self.targets).norm(dim=1).tolist()
        return DragState(step=0, w=self._ws().detach().clone(), handles=self.handles0.clone(), distances=d)

    def step(self, state: DragState) -> DragState:
        """One optimisation step (tracking first, on the current latent's features)."""
        if state.done:
            return state
        feat = self._features(self._ws())
        handles = state.handles if state.step == 0 else ops.track(feat, self.refs, state.handles, self.r2, self.size)
        dist = (handles - self.targets).norm(dim=1)
        total = float(dist.sum())
        history = state.history + [total]
        if bool((dist <= self.reach).all()):
            return replace(
                state, handles=handles, distances=dist.tolist(), done=True, reason="reached", history=history
            )
        if state.step >= self.cfg.steps:
            return replace(
                state, handles=handles, distances=dist.tolist(), done=True, reason="max_steps", history=history
            )
        k = self.cfg.stall_steps
        if len(history) > k and min(history[:-k]) - min(history[-k:]) < self.cfg.stall_min_gain:
            return replace(
                state, handles=handles, distances=dist.tolist(), done=True, reason="stalled", history=history
            )
        loss = self._loss(feat, handles)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return DragState(
            step=state.step + 1,
            w=self._ws().detach().clone(),
            handles=handles,
            distances=dist.tolist(),
            loss=float(loss.detach()),
            history=history,
        )

    def _loss(self, feat: torch.Tensor, handles: torch.Tensor) -> torch.Tensor:
        if self.fast:
            loss = ops.motion_loss(feat, handles, self.targets, self.r1, self.size)
        else:
            loss = _reference_motion_loss(feat, handles, self.targets, self.r1)
        if self.mask is not None:
            loss = loss + self.cfg.lambda_mask * ops.mask_loss(feat, self.feat0, self.mask)
        return loss

    def run(self, callback: Optional[Callable[[DragState], None]] = None) -> DragState:
        state = self.start()
        while not state.done:
            state = self.step(state)
            if callback is not None:
                callback(state)
        return state

    def render(self, state: DragState) -> np.ndarray:
        """The full-resolution image of a state (H x W x 3 uint8)."""
        with torch.no_grad():
            return to_uint8(self.G.synthesis(state.w, noise_mode="const"))[0]


def _reference_motion_loss(
    feat_full: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, r1: int
) -> torch.Tensor:
    """Motion supervision on the resized S x S map, with grid_sample(align_corners=True) at q + d."""
    size = feat_full.shape[-1]
    offsets = ops.disc_offsets(r1, feat_full.device)
    loss = feat_full.new_zeros(())
    for p, t in zip(handles, targets):
        direction = t - p
        norm = torch.linalg.norm(direction)
        if float(norm) <= 1.0:
            continue
        d = direction / (norm + 1e-7)
        q = torch.round(p) + offsets
        q = q[((q >= 0) & (q <= size - 1)).all(dim=1)]
        grid = ((q + d) / (size - 1) * 2 - 1).reshape(1, 1, -1, 2)
        moved = F.grid_sample(feat_full, grid, align_corners=True)[0, :, 0]
        still = feat_full[0][:, q[:, 1].long(), q[:, 0].long()].detach()
        loss = loss + (moved - still).abs().mean()
    return loss
