"""Reduced Fashion-MNIST configurations that fit a 2-core CPU (no GPU).

They show the pipeline's behaviour at small scale; they are NOT the
published protocol (ConvNet-128, 100 experts, 5000-10000 iterations, 1000
evaluation epochs). Every number they produce is labelled "reduced CPU
config" in the README. Their experts train with plain SGD: GSAM, which the
DATM rows of experiments/datm.py use as DATM does, costs two gradients per
step. Evaluating at batch 256 or DATM's 128 is the same here: IPC 10 is
100 images, one batch either way. Commands::

    # baselines (ConvNet-64 ERM on the full clean training set; random IPC 10, ConvNet-128)
    jaxdd baseline --dataset fashion_mnist --noise none --kind erm --width 64 --epochs 10 \
        --no-dsa --seeds 2 --eval-every 2
    jaxdd baseline --dataset fashion_mnist --noise none --kind random --ipc 10 --width 128 \
        --epochs 1000 --seeds 5 --eval-every 250

    # DATM and DM vs random at the SAME reduced scale (ConvNet-32, 300 evaluation epochs)
    jaxdd distill --config experiments/fashion_mnist_cpu.py:datm-ipc10
    jaxdd distill --config experiments/fashion_mnist_cpu.py:dm-ipc10
    jaxdd distill --config experiments/fashion_mnist_cpu.py:dance-ipc10

    # RCIG and, under its own evaluation (Adam + MSE, its network), its random-real init
    jaxdd distill --config experiments/fashion_mnist_cpu.py:rcig-ipc10
    jaxdd distill --config experiments/fashion_mnist_cpu.py:rcig-ipc10 --iterations 0
    jaxdd baseline --dataset fashion_mnist --noise none --kind random --ipc 10 --width 32 \
        --epochs 300 --seeds 5
"""

from __future__ import annotations

import dataclasses

from jaxdd import evaluate
from jaxdd.distill import DistillConfig
from jaxdd.errors import ConfigError
from jaxdd.experts import ExpertConfig
from jaxdd.methods import dance
from jaxdd.methods.datm import DATMConfig
from jaxdd.methods.dm import DMConfig
from jaxdd.methods.rcig import RCIGConfig
from jaxdd.ops.train import TrainConfig

CONFIGS = {
    # 10 000 training images, 5 experts x 8 epochs, 100 iterations of 20 student steps.
    "datm-ipc10": DistillConfig(
        dataset="fashion_mnist",
        noise="none",
        width=32,
        max_train=10000,
        datm=DATMConfig(
            ipc=10,
            iterations=100,
            syn_steps=20,
            expert_epochs=2,
            current_max_start_epoch=2,
            max_start_epoch=6,
            expansion_end_epoch=50,
            lr_img=100.0,
            lr_lr=1e-5,
            lr_y=2.0,
            batch_syn=100,
        ),
        experts=ExpertConfig(num_experts=5, epochs=8),
        eval=TrainConfig(epochs=300),
        checkpoint_every=50,
    ),
    # DM on the same data and evaluation: the reference's step (256 real images per class,
    # lr_img 1, momentum 0.5, DSA) for 1000 of its 20 000 iterations (~1 s each here).
    "dm-ipc10": DistillConfig(
        dataset="fashion_mnist",
        noise="none",
        method="dm",
        width=32,
        max_train=10000,
        dm=DMConfig(ipc=10, iterations=1000),
        eval=TrainConfig(epochs=300),
        checkpoint_every=100,
        log_every=20,
    ),
    # DANCE on the same data and evaluation: the reference's step (128 real images per
    # class, lr 0.01*ipc, momentum 0.5, factor 2 as experiments/dance.py) for 1000 of its
    # 10 000 iterations; its pool on DANCE's schedule cut from 60 to 20 epochs.
    "dance-ipc10": DistillConfig(
        dataset="fashion_mnist",
        noise="none",
        method="dance",
        width=32,
        max_train=10000,
        dance=dance.DANCEConfig(ipc=10, iterations=1000, factor=2),
        experts=dataclasses.replace(dance.POOL, epochs=20),
        eval=TrainConfig(epochs=300),
        checkpoint_every=100,
        log_every=20,
    ),
    # RCIG (experiments/rcig.py:fashion_mnist-ipc10, no flips) cut to fit: ConvNet-32
    # (32/64/128 channels), 256 real images per meta-step, a pool of 10, 300 of its
    # 10 000 meta-steps; the reference's evaluation (2000 Adam steps on the 100 images).
    # With --iterations 0 the set is its initialisation: random real images with
    # labels one-hot - 1/C, i.e. random subsets under RCIG's own evaluation.
    "rcig-ipc10": DistillConfig(
        dataset="fashion_mnist",
        noise="none",
        method="rcig",
        width=32,
        max_train=10000,
        rcig=RCIGConfig(ipc=10, iterations=300, batch_real=256, pool_size=10, flip=False),
        eval=evaluate.adam_protocol(epochs=2000, batch_size=100),
        checkpoint_every=50,
        log_every=10,
    ),
}


def get_config(name: str = "datm-ipc10") -> DistillConfig:
    """The named reduced configuration."""
    if name not in CONFIGS:
        raise ConfigError(f"no config {name!r}: use one of {list(CONFIGS)}")
    return CONFIGS[name]
