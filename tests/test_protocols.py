"""Whole protocols end to end: ZCA through a distillation run, Adam/MSE evaluation."""

import jax
import numpy as np

from jaxdd import evaluate
from jaxdd.data import load_dataset
from jaxdd.data.preprocess import pixel_space
from jaxdd.distill import DistillConfig, run_distill
from jaxdd.experts import ExpertConfig
from jaxdd.methods import datm
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops.train import TrainConfig


def test_zca_distillation_run_keeps_images_in_the_whitened_space(tmp_path):
    config = DistillConfig(
        dataset="digits",
        noise="none",
        zca=True,
        width=4,
        max_train=300,
        datm=datm.DATMConfig(
            ipc=2,
            iterations=2,
            syn_steps=2,
            max_start_epoch=2,
            current_max_start_epoch=1,
            expansion_end_epoch=2,
            lr_img=1e-12,  # the images stay (numerically) the real ones they start from
            init="real",
        ),
        experts=ExpertConfig(num_experts=2, epochs=3, batch_size=64),
        eval=TrainConfig(epochs=5, num_seeds=2),
        checkpoint_every=2,
    )
    summary, run = run_distill(
        config, run_dir=str(tmp_path / "run"), experts_dir=str(tmp_path / "ex"), progress=False
    )
    assert summary["iterations"] == 2 and np.isfinite(summary["accuracy_mean"])
    images = np.load(run.path / "distilled.npz")["images"]
    ds = load_dataset("digits")
    # The run's pixel space: fitted on the same stratified subset (same seed) it used.
    from jaxdd import rng
    from jaxdd.prepare import stratified_cap

    idx = stratified_cap(ds.y_train, 300, seed=rng.numpy_rng(config.seed, "subset"))
    space = pixel_space(ds.x_train[idx], zca=True)
    decoded = np.asarray(space.decode(images))  # [20, 8, 8, 1] pixels in [0, 1]
    real = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32) / 255.0
    nearest = np.abs(decoded.reshape(len(decoded), 1, -1) - real[None]).max(-1).min(-1)
    # Each distilled image decodes to a real training image...
    np.testing.assert_allclose(nearest, 0.0, atol=1e-3)
    # ...and was stored whitened, not merely normalised.
    normalised = (decoded - space.mean) / space.std
    assert np.abs(images - normalised).max() > 0.1


def test_adam_mse_protocol_learns_and_matches_its_schedule(digits):
    x, y, xt, yt = digits
    model = make_convnet(ConvNetSpec(10, (8, 8, 1), width=8, depth=2))
    config = evaluate.adam_protocol(
        epochs=30, batch_size=100, num_seeds=2, warmup_steps=20, lr=3e-3
    )
    assert (config.optimizer, config.loss, config.dsa) == ("adam", "mse", False)
    # RCIG's MSE targets: one-hot minus 1/C.
    targets = np.eye(10, dtype=np.float32)[y[:300]] - 0.1
    result, _ = evaluate.train_and_evaluate(
        model,
        x[:300],
        targets,
        xt,
        yt,
        config,
        key=jax.random.key(0),
        eval_every=10,
        progress=False,
    )
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.mean > 0.6  # 10 classes: chance is 0.1
