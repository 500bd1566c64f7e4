#!/usr/bin/env python3
"""PyTorch twin of `cargo xtask bench`: the same models, losses and optimizer, timed the same way.

Cases (training throughput, full step = forward + ELBO + backward + Adam):
  mlp-b128, mlp-b1024   784-400-20 MLP VAE, Bernoulli logits, analytic KL
  conv-b64, conv-b256   CelebA 64x64 conv VAE (32-64-128-256-512, latent 128),
                        Gaussian likelihood with fixed sigma = 0.1, analytic KL

Prints one JSON object per case: {"case", "batch", "device", "images_per_second",
"first_step_seconds", "steps"}.
"""
import argparse
import json
import math
import time

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2.0 * math.pi)


class Mlp(nn.Module):
    def __init__(self, d=784, hidden=400, latent=20):
        super().__init__()
        self.enc = nn.Linear(d, hidden)
        self.posterior = nn.Linear(hidden, 2 * latent)  # [mu, log_var], as in vae-models
        self.dec = nn.Linear(latent, hidden)
        self.out = nn.Linear(hidden, d)
        self.latent = latent

    def neg_elbo(self, x):
        mu, log_var = self.posterior(F.relu(self.enc(x))).chunk(2, dim=1)
        log_var = log_var.clamp(-30.0, 20.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        logits = self.out(F.relu(self.dec(z)))
        log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return (kl - log_lik).mean()


def down(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01))


def up(cin, cout):
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01))


class Conv(nn.Module):
    def __init__(self, channels=(32, 64, 128, 256, 512), latent=128, side=64, sigma=0.1):
        super().__init__()
        widths = (3,) + tuple(channels)
        self.encoder = nn.Sequential(*[down(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.top = side >> len(channels)
        self.posterior = nn.Linear(channels[-1] * self.top ** 2, 2 * latent)
        self.input = nn.Linear(latent, channels[-1] * self.top ** 2)
        rev = tuple(reversed(channels)) + (channels[0],)
        self.decoder = nn.Sequential(*[up(a, b) for a, b in zip(rev[:-1], rev[1:])])
        self.output = nn.Conv2d(channels[0], 3, 3, 1, 1)
        self.channels, self.log_sigma = channels, math.log(sigma)

    def neg_elbo(self, x):
        n = x.shape[0]
        mu, log_var = self.posterior(self.encoder(x).flatten(1)).chunk(2, dim=1)
        log_var = log_var.clamp(-30.0, 20.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        h = self.input(z).view(n, self.channels[-1], self.top, self.top)
        mean = torch.sigmoid(self.output(self.decoder(h)))
        sq = ((x - mean) / math.exp(self.log_sigma)).pow(2)
        log_lik = -0.5 * (sq + 2.0 * self.log_sigma + LOG_2PI).flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return (kl - log_lik).mean()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name, model, shape, warmup, steps, device, repeats):
    started = time.perf_counter()
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(*shape, device=device)

    def step():
        loss = model.neg_elbo(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step()
    sync(device)
    first = time.perf_counter() - started
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):  # median of the timed segments, as the Rust harness does
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        loss.item()
        sync(device)
        rates.append(shape[0] * steps / (time.perf_counter() - t0))
    rates.sort()
    print(json.dumps({
        "case": name, "batch": shape[0], "device": str(device),
        "images_per_second": rates[len(rates) // 2],
        "first_step_seconds": first, "steps": steps,
    }), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", default="mlp-b128,mlp-b1024,conv-b64,conv-b256")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    for name in a.cases.split(","):
        model, batch = name.split("-b")
        batch = int(batch)
        repeats = 1 if a.quick else 3
        if model == "mlp":
            warmup, steps = (2, 5) if a.quick else (10, 100)
            bench(name, Mlp(), (batch, 784), warmup, steps, device, repeats)
        else:
            warmup, steps = (1, 1) if a.quick else (1, 5) if device.type == "cpu" else (3, 50)
            bench(name, Conv(), (batch, 3, 64, 64), warmup, steps, device, repeats)


if __name__ == "__main__":
    main()
