import pathlib

import pytest

from jaxdd import cli
from jaxdd.distill import check_config

FILE = pathlib.Path(__file__).parents[1] / "experiments" / "datm.py"
NAMES = [
    f"{d}-ipc{i}" for d in ("cifar10", "cifar100", "fashion_mnist", "tiny") for i in (1, 10, 50)
]


@pytest.mark.parametrize("name", NAMES)
def test_every_table_row_loads_and_is_consistent(name):
    config = cli._load_config_file(f"{FILE}:{name}")
    check_config(config)
    assert config.datm.max_start_epoch - 1 + config.datm.expert_epochs <= config.experts.epochs
    assert config.datm.iterations == 10000


def test_rows_match_algorithms_table():
    c10 = cli._load_config_file(f"{FILE}:cifar10-ipc10")
    d = c10.datm
    assert (d.syn_steps, d.expert_epochs, d.current_max_start_epoch, d.max_start_epoch) == (
        80,
        2,
        10,
        20,
    )
    assert (d.lr_img, d.lr_lr, d.lr_y, d.threshold, d.batch_syn) == (100, 1e-5, 2, 1.0, 100)
    assert c10.zca and d.sequential_generation and d.expansion_end_epoch == 1000
    c100 = cli._load_config_file(f"{FILE}:cifar100-ipc50").datm
    assert (c100.min_start_epoch, c100.max_start_epoch, c100.sequential_generation) == (
        20,
        70,
        False,
    )
    fm = cli._load_config_file(f"{FILE}:fashion_mnist-ipc10")
    assert not fm.zca and fm.dataset == "fashion_mnist"


def test_unknown_config_name_is_a_clear_error(capsys):
    assert cli.main(["distill", "--config", f"{FILE}:cifar11-ipc10"]) == 2
    assert "cifar10-ipc10" in capsys.readouterr().err


DANCE_FILE = FILE.with_name("dance.py")
DANCE_NAMES = [
    f"{p}{d}-ipc{i}"
    for p in ("", "dm-")
    for d in ("fashion_mnist", "cifar10", "cifar100", "tiny")
    for i in (1, 10, 50)
]


@pytest.mark.parametrize("name", DANCE_NAMES)
def test_every_dance_and_dm_row_loads_and_is_consistent(name):
    config = cli._load_config_file(f"{DANCE_FILE}:{name}")
    check_config(config)
    assert config.depth == 3
    ipc = int(name.rsplit("ipc", 1)[1])
    assert config.settings.ipc == ipc
    if name.startswith("dm-"):
        assert config.method == "dm" and config.dm.iterations == 20000
        assert config.eval.epochs == 1000 and config.eval.cutmix == 0.0
    else:
        assert config.method == "dance" and config.dance.iterations == 10000
        assert config.dance.image_lr == pytest.approx(0.01 * ipc)
        assert config.dance.factor == 2 and config.dance.batch_real == 128
        assert config.eval.epochs == 1500 and config.eval.cutmix == 0.5
        assert "cutout" not in config.eval.dsa_families
        assert config.experts.epochs == 60 and config.experts.cutmix == 0.5


def test_unknown_dance_config_name_is_a_clear_error(capsys):
    assert cli.main(["distill", "--config", f"{DANCE_FILE}:dm-svhn-ipc10"]) == 2
    assert "dm-NAME" in capsys.readouterr().err


CPU_FILE = FILE.with_name("fashion_mnist_cpu.py")


@pytest.mark.parametrize("name", ["datm-ipc10", "dm-ipc10", "dance-ipc10", "rcig-ipc10"])
def test_reduced_cpu_configs_load_and_check(name):
    config = cli._load_config_file(f"{CPU_FILE}:{name}")
    check_config(config)
    assert config.dataset == "fashion_mnist" and config.max_train == 10000 and config.width == 32


RCIG_FILE = FILE.with_name("rcig.py")


@pytest.mark.parametrize(
    "name",
    [f"{d}-ipc{i}" for d in ("fashion_mnist", "cifar10", "cifar100") for i in (1, 10, 50)]
    + ["tiny-ipc1", "tiny-ipc10"],
)
def test_every_rcig_row_loads_and_trains_the_references_2000_steps(name):
    config = cli._load_config_file(f"{RCIG_FILE}:{name}")
    check_config(config)
    r = config.rcig
    assert config.method == "rcig" and r.iterations == 10000 and r.batch_real == 1024
    assert config.eval.optimizer == "adam" and config.eval.loss == "mse"
    n = r.ipc * (
        10 if name.startswith(("cifar10-", "fashion")) else 100 if "cifar100" in name else 200
    )
    n *= 2 if r.flip else 1
    steps = config.eval.epochs * -(-n // config.eval.batch_size)
    assert steps == (1000 if name == "cifar10-ipc1" else 2000)
    assert r.flip == (
        not name.startswith("fashion") and name not in ("cifar100-ipc50", "tiny-ipc10")
    )
    assert (r.softplus_beta == 0) == name.startswith("tiny")
