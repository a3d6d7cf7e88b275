"""GPU: can the tiny VindLU video encoder learn direction of motion given far more steps?

Supervised probe: the tiny preset's video encoder (4-layer ViT, 112 px, zero-init temporal
modules, mean pooling) + a linear head, trained on one synthetic attribute of the demo's
MSR-VTT-style clips. Input: ``.gpu/clips.npz`` with ``{train,test}_frames`` (uint8 [N, 4, 3, 112,
112], the 4 middle frames that ``t2v2t.data.eval_loader.make_eval_loader`` gives from ``runs/demo/shards/
msrvtt/{train,test}_12f``) and ``{train,test}_{dir,colour}`` class indices from
``synthetic_attributes.json``. Run from the repo root: ``python3 bench/experiments/direction_probe_gpu.py``
(``DEV=cpu SMOKE=1`` for a smoke run). Result of 2026-11-27 on an H200: direction_probe_h200.json.
"""

import importlib.util
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

spec = importlib.util.spec_from_file_location(
    "vision", "t2v2t/models/vision.py"
)  # no transformers import
vision = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vision)
dev = os.environ.get("DEV", "cuda")
SMOKE = os.environ.get("SMOKE")
print(torch.__version__, torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", flush=True)
d = np.load(".gpu/clips.npz")
X = {s: torch.from_numpy(d[f"{s}_frames"]).to(dev) for s in ("train", "test")}


def norm(x):
    return (x.float() / 255 - 0.5) / 0.5


results = []


def run(target, tls, steps, batch=64, lr=5e-4, seed=0):
    torch.manual_seed(seed)
    steps = 8 if SMOKE else steps
    y = {s: torch.from_numpy(d[f"{s}_{target}"]).to(dev) for s in ("train", "test")}
    bb = vision.create_backbone("vit_tiny_patch16_224", image_size=112, depth=4, pool="avg")
    enc = vision.VideoEncoder(bb, num_frames=4).to(dev)
    ncls = int(y["train"].max()) + 1
    head = torch.nn.Linear(enc.width, ncls).to(dev)
    groups = [
        {
            "params": [p for n, p in enc.named_parameters() if not n.startswith("temporal")],
            "lr": lr,
        },
        {
            "params": [p for n, p in enc.named_parameters() if n.startswith("temporal")],
            "lr": lr * tls,
        },
        {"params": head.parameters(), "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.02)
    g = torch.Generator(device=dev).manual_seed(seed)
    t0 = time.time()
    curve = []

    def acc(s):
        enc.eval()
        with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16):
            p = torch.cat(
                [
                    head(enc(norm(X[s][i : i + 100]))[1].mean(1)).argmax(1)
                    for i in range(0, len(X[s]), 100)
                ]
            )
        enc.train()
        return (p == y[s]).float().mean().item()

    for step in range(1, steps + 1):
        idx = torch.randint(0, len(y["train"]), (batch,), device=dev, generator=g)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = F.cross_entropy(
                head(enc(norm(X["train"][idx]))[1].mean(1)).float(), y["train"][idx]
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (steps // 8) == 0:
            row = (step, round(loss.item(), 3), round(acc("train"), 3), round(acc("test"), 3))
            curve.append(row)
            print(target, f"tls={tls}", row, f"{time.time() - t0:.0f}s", flush=True)
    results.append(
        {
            "target": target,
            "temporal_lr_scale": tls,
            "steps": steps,
            "batch": batch,
            "curve": curve,
            "seconds": time.time() - t0,
        }
    )
    json.dump(
        {"device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "results": results},
        open(f"{os.environ.get('OUT', '.')}/probe_gpu.json", "w"),
        indent=1,
    )


run("colour", 1, 400)
run("dir", 30, 4000)
run("dir", 1, 4000)
run("dir", 30, 12000)
out = os.environ.get("OUT", ".")
json.dump(
    {"device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "results": results},
    open(f"{out}/probe_gpu.json", "w"),
    indent=1,
)
