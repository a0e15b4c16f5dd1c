"""jaxdd: dataset distillation for noisily labelled image data, in JAX.

The public API, re-exported from the modules that define it.
"""

from jaxdd.baselines import BaselineConfig, random_subset, run_baseline
from jaxdd.checkpoint import Checkpointer
from jaxdd.data import Dataset, fit_zca, list_datasets, load_dataset, normalize
from jaxdd.data.noise import NoisyLabels, make_noisy, parse_noise
from jaxdd.distill import DistillConfig, run_distill
from jaxdd.errors import ConfigError, DataUnavailableError, JaxddError
from jaxdd.evaluate import EvalResult, adam_protocol, sgd_protocol, train_and_evaluate
from jaxdd.experts import ExpertConfig, train_experts
from jaxdd.methods.datm import DATMConfig, mtt_config
from jaxdd.models.convnet import ConvNetSpec, Model, depth_for, init_many, make_convnet
from jaxdd.ops.dsa import DSAConfig, dsa
from jaxdd.ops.train import TrainConfig
from jaxdd.prepare import Prepared, prepare
from jaxdd.trust.dual import TADConfig, TrustSplit, run_tad

__version__ = "0.1.0"

__all__ = [
    "BaselineConfig",
    "Checkpointer",
    "DATMConfig",
    "DistillConfig",
    "ExpertConfig",
    "Prepared",
    "TADConfig",
    "TrustSplit",
    "mtt_config",
    "prepare",
    "run_distill",
    "run_tad",
    "train_experts",
    "ConfigError",
    "ConvNetSpec",
    "DSAConfig",
    "DataUnavailableError",
    "Dataset",
    "EvalResult",
    "JaxddError",
    "Model",
    "NoisyLabels",
    "TrainConfig",
    "adam_protocol",
    "depth_for",
    "dsa",
    "fit_zca",
    "init_many",
    "list_datasets",
    "load_dataset",
    "make_convnet",
    "make_noisy",
    "normalize",
    "parse_noise",
    "random_subset",
    "run_baseline",
    "sgd_protocol",
    "train_and_evaluate",
]
