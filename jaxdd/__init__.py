"""jaxdd: dataset distillation for noisily labelled image data, in JAX.

The public API, re-exported from the modules that define it. The modules
are imported on first use (``jaxdd.load_dataset`` imports `jaxdd.data`), so
``import jaxdd`` — and the command line's argument parsing — does not start
JAX.
"""

from jaxdd._lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "BaselineConfig": "jaxdd.baselines",
    "random_subset": "jaxdd.baselines",
    "run_baseline": "jaxdd.baselines",
    "Checkpointer": "jaxdd.checkpoint",
    "evaluate_networks": "jaxdd.cross_arch",
    "evaluate_run": "jaxdd.cross_arch",
    "Dataset": "jaxdd.data",
    "fit_zca": "jaxdd.data",
    "list_datasets": "jaxdd.data",
    "load_dataset": "jaxdd.data",
    "normalize": "jaxdd.data",
    "NoisyLabels": "jaxdd.data.noise",
    "make_noisy": "jaxdd.data.noise",
    "parse_noise": "jaxdd.data.noise",
    "DistillConfig": "jaxdd.distill",
    "run_distill": "jaxdd.distill",
    "ConfigError": "jaxdd.errors",
    "DataUnavailableError": "jaxdd.errors",
    "JaxddError": "jaxdd.errors",
    "EvalResult": "jaxdd.evaluate",
    "adam_protocol": "jaxdd.evaluate",
    "dance_protocol": "jaxdd.evaluate",
    "sgd_protocol": "jaxdd.evaluate",
    "train_and_evaluate": "jaxdd.evaluate",
    "ExpertConfig": "jaxdd.experts",
    "train_experts": "jaxdd.experts",
    "DATMConfig": "jaxdd.methods.datm",
    "mtt_config": "jaxdd.methods.datm",
    "Method": "jaxdd.methods.base",
    "get_method": "jaxdd.methods.base",
    "DMConfig": "jaxdd.methods.dm",
    "DANCEConfig": "jaxdd.methods.dance",
    "ConvNetSpec": "jaxdd.models.convnet",
    "Model": "jaxdd.models.base",
    "depth_for": "jaxdd.models.convnet",
    "init_many": "jaxdd.models.convnet",
    "make_convnet": "jaxdd.models.convnet",
    "NetSpec": "jaxdd.models.zoo",
    "make_network": "jaxdd.models.zoo",
    "network_spec": "jaxdd.models.zoo",
    "DSAConfig": "jaxdd.ops.dsa",
    "dsa": "jaxdd.ops.dsa",
    "TrainConfig": "jaxdd.ops.train",
    "Prepared": "jaxdd.prepare",
    "prepare": "jaxdd.prepare",
    "TADConfig": "jaxdd.trust.dual",
    "TrustSplit": "jaxdd.trust.dual",
    "run_tad": "jaxdd.trust.dual",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("jaxdd", _EXPORTS, globals())
