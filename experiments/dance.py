"""DANCE and DM configurations: the references' settings per dataset and IPC.

Run one with::

    jaxdd distill --config experiments/dance.py:fashion_mnist-ipc10
    jaxdd distill --config experiments/dance.py:cifar10-ipc50 --noise symmetric:0.4 --trust tad
    jaxdd distill --config experiments/dance.py:dm-cifar10-ipc10

Flags and ``--set PATH=VALUE`` override the file (``--show-config`` prints
the result). A name ``dm-ROW`` is DM on ROW's dataset and IPC.

Where the DANCE numbers come from (the reference's ``arguments/arg_condense.py``
and its ``--reproduce`` settings, ``arguments/reproduce_condense.py``):
  * ConvNet of depth 3 for every dataset but ImageNet, Tiny ImageNet's 64 px
    included (``args.depth = 3``; jaxdd's default would pick 4 at 64 px);
  * 10 000 iterations (``niter``), lr_img = 0.01·ipc (`DANCEConfig.lr_img`
    None), momentum 0.5 (``mom_img``), 128 real images per class
    (``batch_real``), matching augmentation colour + crop + cutout
    (``aug_type``);
  * multi-formation factor 2, the setting of the reference's README example
    (``--ipc 50 --factor 2``) and of IDC, whose trainer DANCE builds on
    (the argument's own default is 1);
  * expert pool: the reference pretrains 20 models for 60 epochs
    (``pretrain_amount``, ``pretrain_epochs``) and samples from
    ``num_premodel`` = 5 of them; jaxdd trains the 5 it uses (`dance.POOL`);
  * evaluation: 1500 epochs, SGD 0.01, momentum 0.9, wd 5e-4, DSA
    (colour, crop, flip, scale, rotate: cutout removed under CutMix) and
    CutMix with p 0.5 (``mix_p``), `evaluate.dance_protocol`; Fashion-MNIST
    keeps flip (the reference removes it for MNIST and SVHN only).

DM rows (``dm-ROW``) follow DM's own script (``main_DM.py`` of the
DatasetCondensation repository): 20 000 iterations, lr_img 1, momentum 0.5,
256 real images per class, real-image init, DSA with every family, and its
evaluation (1000 epochs, SGD 0.01, ×0.1 at half; `evaluate.sgd_protocol`).

Tiny ImageNet needs a 64 px dataset in the registry (a TFDS builder named
``tiny_imagenet``); its rows are listed for completeness. None of these
rows has been run at full size yet; the README says which were.
"""

from __future__ import annotations

import dataclasses

from jaxdd.distill import DistillConfig, method_defaults
from jaxdd.errors import ConfigError
from jaxdd.methods.dance import DANCEConfig
from jaxdd.methods.dm import DMConfig
from jaxdd.ops.train import TrainConfig

# Row prefix -> registry name (the reference's -d: fashion, cifar10, cifar100, tinyimagenet).
DATASETS = {
    "fashion_mnist": "fashion_mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "tiny": "tiny_imagenet",
}


def _dance(dataset: str, ipc: int) -> DistillConfig:
    """DANCE on `dataset` at `ipc` as the reference's --reproduce settings."""
    base = method_defaults("dance")
    return dataclasses.replace(
        base,
        dataset=DATASETS[dataset],
        depth=3,  # reproduce_condense.py: args.depth = 3 (Tiny's 64 px included)
        dance=DANCEConfig(
            ipc=ipc,
            iterations=10000,  # niter
            batch_real=128,  # batch_real
            lr_img=None,  # 0.01 * ipc
            momentum_img=0.5,  # mom_img
            factor=2,  # README example; IDC's multi-formation
        ),
    )


def _dm(dataset: str, ipc: int) -> DistillConfig:
    """DM on `dataset` at `ipc` as DM's script (main_DM.py)."""
    return dataclasses.replace(
        method_defaults("dm"),
        dataset=DATASETS[dataset],
        depth=3,  # net ConvNet: depth 3 at every resolution DM reports
        dm=DMConfig(ipc=ipc, iterations=20000, batch_real=256, lr_img=1.0, momentum_img=0.5),
        eval=TrainConfig(epochs=1000),  # epoch_eval_train 1000, lr_net 0.01
    )


CONFIGS: dict[str, DistillConfig] = {
    f"{name}-ipc{ipc}": _dance(name, ipc) for name in DATASETS for ipc in (1, 10, 50)
}


def get_config(name: str = "fashion_mnist-ipc10") -> DistillConfig:
    """The named configuration (`CONFIGS`); ``dm-ROW`` is DM on ROW's dataset and IPC."""
    row = name.removeprefix("dm-")
    if row not in CONFIGS:
        raise ConfigError(
            f"no config {name!r} in experiments/dance.py: use one of {', '.join(CONFIGS)}, "
            "or dm-NAME for DM on NAME's dataset and IPC"
        )
    if row == name:
        return CONFIGS[row]
    return _dm(row.rsplit("-ipc", 1)[0], CONFIGS[row].dance.ipc)
