"""The conditional VAE: a convolutional encoder and decoder, both told the class.

Images are float (N, 3, R, R) in [0, 1]. Four stride-2 stages take R down to R/16 and four
upsampling stages back. The class y enters everywhere:

- as a learned embedding, concatenated to the encoder's flattened features and to the
  latent code the decoder starts from;
- as a per-class scale and shift after each decoder normalisation (FiLM);
- as the prior p(z | y) = N(m_y, I), with a learned mean per class.

With a shared N(0, I) prior the encoder, which sees the image, tends to put the class into
z and the decoder learns to ignore y, so samples drawn for a rare class look like the
common one. A per-class prior mean lets z keep class information and still sample true
to the label.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.labels import NUM_CLASSES


@dataclass(frozen=True)
class CVAEConfig:
    """Everything that decides a trained cVAE; its dict is part of the cache key."""

    resolution: int = 64
    latent: int = 64
    epochs: int = 50
    beta: float = 1.0  # weight of the KL term in the training objective
    kl_warmup: float = 0.2  # fraction of training over which beta ramps up from 0; 0 = off
    width: int = 32  # channels of the first stage, doubled at each of the four
    embed: int = 16  # class embedding size
    batch_size: int = 64
    lr: float = 1e-3  # AdamW
    weight_decay: float = 1e-4
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class _Up(nn.Module):
    """Upsample x2, conv, then a class-conditional GroupNorm (FiLM), SiLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.norm = nn.GroupNorm(8, c_out, affine=False)
        self.film = nn.Embedding(NUM_CLASSES, 2 * c_out)
        nn.init.zeros_(self.film.weight)  # starts as a plain GroupNorm

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(y)[:, :, None, None].chunk(2, 1)
        return F.silu(self.norm(self.conv(x)) * (1 + scale) + shift)


class CVAE(nn.Module):
    def __init__(self, cfg: CVAEConfig):
        super().__init__()
        if cfg.resolution % 16:
            raise ValueError(f"cVAE resolution must be a multiple of 16; got {cfg.resolution}")
        self.cfg = cfg
        w, self.base = cfg.width, cfg.resolution // 16
        channels = [w, 2 * w, 4 * w, 8 * w]
        flat = channels[-1] * self.base * self.base
        self.embed = nn.Embedding(NUM_CLASSES, cfg.embed)
        self.prior_mean = nn.Embedding(NUM_CLASSES, cfg.latent)
        nn.init.zeros_(self.prior_mean.weight)
        # [3, *channels] is one longer: each stage goes from the channels before it to its own.
        stages = (_down(a, b) for a, b in zip([3, *channels], channels, strict=False))
        self.encoder = nn.Sequential(*stages, nn.Flatten())
        self.to_stats = nn.Linear(flat + cfg.embed, 2 * cfg.latent)
        self.from_latent = nn.Sequential(nn.Linear(cfg.latent + cfg.embed, flat), nn.SiLU())
        rev = channels[::-1]
        self.decoder = nn.ModuleList(_Up(a, b) for a, b in zip(rev, rev[1:] + [w], strict=True))
        self.to_rgb = nn.Conv2d(w, 3, 3, padding=1)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, float32 whatever the autocast dtype."""
        mu, logvar = self.to_stats(torch.cat([self.encoder(x), self.embed(y)], 1)).float().chunk(2, 1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(torch.cat([z, self.embed(y)], 1)).view(len(z), -1, self.base, self.base)
        for stage in self.decoder:
            h = stage(h, y)
        return self.to_rgb(h)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Decoder logits, posterior mean and log-variance, and the prior mean for y."""
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode_logits(z, y), mu, logvar, self.prior_mean(y)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for labels `y`, from z = m_y + noise (standard normal, drawn if not given)."""
        if noise is None:
            noise = torch.randn(len(y), self.cfg.latent, device=y.device)
        return torch.sigmoid(self.decode_logits(self.prior_mean(y) + noise, y).float())


def elbo_terms(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
               prior_mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, KL) of images x given the model's outputs (`elbo_terms(x, *model(x, y))`),
    each summed over an image and averaged over the batch.

    Reconstruction is the Bernoulli negative log-likelihood of the pixels (BCE on logits:
    stable under autocast); KL is from q(z | x, y) to the prior N(prior_mean, I).
    """
    recon = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum") / len(x)
    kl = 0.5 * torch.sum(logvar.exp() + (mu - prior_mean.float()).pow(2) - 1 - logvar) / len(x)
    return recon, kl


@torch.no_grad()
def generate(model: CVAE, labels: np.ndarray, side: int, seed: int = 0, out: np.ndarray | None = None,
             batch: int = 256) -> np.ndarray:
    """uint8 (N, side, side, 3) images for `labels`, from seeded prior draws, resized to `side`.

    `out` (e.g. a memory map) receives them batch by batch; the prior draws are made on the
    CPU, so a seed gives the same images on any device.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    out = np.empty((len(labels), side, side, 3), np.uint8) if out is None else out
    for start in range(0, len(labels), batch):
        y = torch.as_tensor(labels[start:start + batch], dtype=torch.long)
        noise = torch.randn(len(y), model.cfg.latent, generator=generator)
        x = model.sample(y.to(device), noise.to(device))
        if side != x.shape[-1]:
            x = F.interpolate(x, size=(side, side), mode="bicubic", antialias=True)
        out[start:start + len(y)] = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return out
