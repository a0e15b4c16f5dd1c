import dataclasses
import json

from jaxdd import demo
from jaxdd.ops.train import TrainConfig


def _tiny(config):
    """The demo row shrunk to seconds: narrow nets, a few epochs, two seeds."""
    if isinstance(config, demo.BaselineConfig):
        train = TrainConfig(epochs=2, num_seeds=2)
        return dataclasses.replace(
            config, width=4, ipc=2, max_train=300, train=train, eval_every=None
        )
    datm = dataclasses.replace(
        config.datm,
        ipc=2,
        iterations=2,
        syn_steps=2,
        max_start_epoch=2,
        current_max_start_epoch=1,
        expansion_end_epoch=1,
    )
    trust = config.trust and dataclasses.replace(
        config.trust, rounds=2, warmup_steps=2, steps_per_round=1, width=4
    )
    return dataclasses.replace(
        config,
        width=4,
        max_train=300,
        datm=datm,
        trust=trust,
        experts=dataclasses.replace(config.experts, num_experts=2, epochs=3),
        eval=TrainConfig(epochs=2, num_seeds=2),
    )


def test_demo_runs_every_row_and_writes_one_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "ROWS", [(name, _tiny(c)) for name, c in demo.ROWS])
    rows = demo.run_demo(out_root=tmp_path, progress=False)
    assert [r["method"] for r in rows] == [name for name, _ in demo.ROWS]
    by_name = {r["method"]: r for r in rows}
    # baselines train on what they use; distilled rows train on ipc x classes images
    assert by_name["random IPC 10"]["images"] == by_name["random IPC 10"]["real data used"] == 20
    assert by_name["DATM on noisy data"]["images"] == 20
    assert by_name["DATM on noisy data"]["real data used"] > 250
    assert by_name["two-stage (small-loss) + DATM"]["real data used"] < 200  # half kept
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "summary.json").read_text()) == rows
    assert "| TAD + DATM |" in (run / "results.md").read_text()
    assert "TAD + DATM" in capsys.readouterr().out
