#!/usr/bin/env python3
"""PyTorch twin of `cargo xtask bench`: the same models, losses and optimizer, timed the same way.

Cases (training throughput, full step = forward + ELBO + backward + Adam):
  mlp-b128, mlp-b1024   784-400-20 MLP VAE, Bernoulli logits, analytic KL
  conv-b64, conv-b256   CelebA 64x64 conv VAE (32-64-128-256-512, latent 128),
                        Gaussian likelihood with fixed sigma = 0.1, analytic KL

Prints one JSON object per case: {"case", "batch", "device", "images_per_second",
"first_step_seconds", "steps"}.

With --count-ops, counts instead what one steady-state step executes: CUDA kernels on a GPU,
else (a stand-in) the aten operators that call no other aten operator, each of which is one
kernel on a GPU. Adam runs its foreach (multi-tensor) form, PyTorch's default on CUDA.
Prints {"case", "ops_per_step", "counted"} per case.
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


# aten operators that launch no kernel: allocation, views, metadata, host scalars.
NO_KERNEL = {
    "aten::" + op for op in (
        "empty empty_strided empty_like view _reshape_alias reshape as_strided as_strided_ "
        "detach detach_ alias resolve_conj resolve_neg result_type _local_scalar_dense item "
        "t transpose permute expand squeeze unsqueeze slice select split chunk narrow "
        "unbind resize_ set_ lift_fresh is_nonzero size stride to _to_copy contiguous"
    ).split()
}


def count_ops(name, model, shape, device):
    from torch.profiler import ProfilerActivity, profile

    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    x = torch.rand(*shape, device=device)

    def step():
        loss = model.neg_elbo(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
        sync(device)
    events = prof.events()
    if cuda:
        n = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA
                and "memcpy" not in e.name.lower() and "memset" not in e.name.lower())
        counted = "cuda kernels"
    else:
        aten = [e for e in events if e.name.startswith("aten::")]

        def inside_foreach(e):
            parent = e.cpu_parent
            while parent is not None:
                if parent.name.startswith("aten::_foreach_"):
                    return True
                parent = parent.cpu_parent
            return False

        with_aten_child = set()
        for e in aten:
            parent = e.cpu_parent
            while parent is not None:
                if parent.name.startswith("aten::"):
                    with_aten_child.add(id(parent))
                    break
                parent = parent.cpu_parent
        # One kernel each on CUDA: a leaf operator that computes something, and a foreach
        # (multi-tensor) operator as a whole, which the CPU runs tensor by tensor.
        n = sum(1 for e in aten
                if not inside_foreach(e)
                and (e.name.startswith("aten::_foreach_")
                     or (id(e) not in with_aten_child and e.name not in NO_KERNEL)))
        counted = "aten ops (cpu)"
    print(json.dumps({"case": name, "ops_per_step": n, "counted": counted}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", default="mlp-b128,mlp-b1024,conv-b64,conv-b256")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--count-ops", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    for name in a.cases.split(","):
        model, batch = name.split("-b")
        batch = int(batch)
        repeats = 1 if a.quick else 3
        if a.count_ops:
            shape = (batch, 784) if model == "mlp" else (batch, 3, 64, 64)
            count_ops(name, Mlp() if model == "mlp" else Conv(), shape, device)
            continue
        if model == "mlp":
            warmup, steps = (2, 5) if a.quick else (10, 100)
            bench(name, Mlp(), (batch, 784), warmup, steps, device, repeats)
        else:
            warmup, steps = (1, 1) if a.quick else (1, 5) if device.type == "cpu" else (3, 50)
            bench(name, Conv(), (batch, 3, 64, 64), warmup, steps, device, repeats)


if __name__ == "__main__":
    main()
