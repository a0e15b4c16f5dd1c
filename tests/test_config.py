"""jaxdd.config: typed values, dotted overrides, help from docstrings; one value per setting."""

import dataclasses
import math
from typing import ClassVar, Literal

import numpy as np
import pytest

from jaxdd import config as cfg
from jaxdd import validate
from jaxdd.baselines import BaselineConfig
from jaxdd.distill import DistillConfig, check_config
from jaxdd.errors import ConfigError
from jaxdd.evaluate import EvalResult
from jaxdd.trust.dual import TADConfig


@dataclasses.dataclass(frozen=True)
class Inner:
    """A group.

    Attributes:
      rate: a rate. Second sentence, not shown.
      mode, other: two choices, e.g. this one.
    """

    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    other: Literal["a", "b"] = "a"


@dataclasses.dataclass(frozen=True)
class Root:
    """A root.

    Attributes:
      count: how many.
      steps: the milestones.
      inner: the group.
      extra: an optional group.
    """

    LINKED: ClassVar = (("inner.mode", "inner.other"),)

    count: int | None = 3
    steps: tuple[float, ...] = (0.5,)
    inner: Inner = Inner()
    extra: Inner | None = None

    def unused(self) -> dict[str, str]:
        return {"inner.rate": "mode b ignores it"} if self.inner.mode == "b" else {}


def _set(root, *assignments, how=None):
    return cfg.apply(root, [cfg.parse_assignment(a) for a in assignments], how=how or {})


@pytest.mark.parametrize(
    ("text", "annotation", "value"),
    [
        ("5", int, 5),
        ("-5", int, -5),
        ("1e-5", float, 1e-5),
        ("inf", float, math.inf),
        ("TRUE", bool, True),
        ("false", bool, False),
        ("x:y", str, "x:y"),
        ("b", Literal["a", "b"], "b"),
        ("none", int | None, None),
        ("7", int | None, 7),
        ("given", int | Literal["given"] | None, "given"),
        ("0.25,0.75", tuple[float, ...], (0.25, 0.75)),
        ("()", tuple[float, ...], ()),
    ],
)
def test_values_parse_by_annotation(text, annotation, value):
    assert cfg.parse_value(text, annotation) == value


@pytest.mark.parametrize(
    ("text", "annotation"),
    [("5.0", int), ("nan", float), ("yes", bool), ("c", Literal["a", "b"]), ("x", int | None)],
)
def test_values_that_do_not_parse_say_what_was_expected(text, annotation):
    with pytest.raises(ValueError) as err:
        cfg.parse_value(text, annotation)
    assert str(err.value) == f"{text!r} is not {cfg.describe_type(annotation)}"


@pytest.mark.parametrize("root", [DistillConfig(trust=TADConfig()), BaselineConfig()])
def test_every_setting_prints_as_it_parses_and_has_help(root):
    for leaf in cfg.leaves(root, expand=True):
        assert leaf.help, f"{leaf.path} has no Attributes: entry"
        if cfg.group_class(leaf.annotation) is None:
            text = cfg.format_value(leaf.value)
            assert cfg.parse_value(text, leaf.annotation) == leaf.value, leaf.path


def test_help_is_the_first_sentence_of_the_attribute_entry():
    helps = {leaf.path: leaf.help for leaf in cfg.leaves(Root(), expand=True)}
    assert helps["inner.rate"] == "a rate"
    assert helps["inner.mode"] == helps["inner.other"] == "two choices, e.g. this one"
    assert "extra.rate" in helps  # an absent optional group is listed with its defaults


def test_overrides_set_nested_values_and_linked_paths_together():
    root = _set(Root(), "count=none", "steps=0.1,0.2", "inner.mode=b")
    assert root.count is None and root.steps == (0.1, 0.2)
    assert root.inner.mode == root.inner.other == "b"  # LINKED: one setting
    assert Root().inner.mode == "a"  # frozen: the original is untouched


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        (["inner.rat=1"], "no setting 'inner.rat'; did you mean inner.rate"),
        (["rate=1"], "did you mean inner.rate, extra.rate"),
        (["inner=1"], "inner is a group of settings: set one of its fields, e.g. inner.rate"),
        (["extra.rate=1"], "extra.rate needs extra, which is none here: set it with --extra"),
        (["count=x"], "'x' is not an integer or none (the type of count)"),
        (["inner.mode=a", "inner.other=b"], "contradicts --set inner.mode=a: inner.mode, inner"),
        (["count=1", "count=2"], "count takes one value"),
        (["inner.mode=b", "inner.rate=0.1"], "--set inner.rate=0.1 has no effect: mode b"),
        (["steps=1,x"], "'x' is not a number (inf allowed) (the type of steps)"),
    ],
)
def test_refused_overrides_name_their_source_and_the_fix(assignments, message):
    with pytest.raises(ConfigError) as err:
        _set(Root(), *assignments, how={"extra": "--extra"})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"--set {assignments[-1]}")


def test_a_reserved_path_names_its_flag():
    with pytest.raises(ConfigError, match="count is set with --count"):
        _set(Root(), "count=1", how={"count": "--count"})
    assert cfg.parse_assignment("a.b = 1=2") == cfg.Override("a.b", "1=2", "--set a.b = 1=2")
    with pytest.raises(ConfigError, match="give PATH=VALUE"):
        cfg.parse_assignment("a.b")


def test_describe_lists_every_leaf_with_links_and_unused_marked():
    lines = cfg.describe(_set(Root(), "inner.mode=b")).splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "count",
        "steps",
        "inner.rate",
        "inner.mode",
        "inner.other",
        "extra",
    ]
    assert "[unused: mode b ignores it]" in lines[2]
    assert "[one setting with inner.other]" in lines[3]


def test_tree_check_refuses_wrong_types_and_out_of_range_values():
    bad_init = DistillConfig(datm=dataclasses.replace(DistillConfig().datm, init="bogus"))
    with pytest.raises(ConfigError, match=r"^datm.init must be one of correct, real, got 'bogus'$"):
        validate.check_tree(bad_init)
    milestones = dataclasses.replace(DistillConfig().eval, lr_milestones=(0.5, 1.5))
    with pytest.raises(ConfigError, match=r"eval.lr_milestones must be in \(0, 1\), got 1.5"):
        validate.check_tree(DistillConfig(eval=milestones))
    keep = DistillConfig(trust=TADConfig(mode="small-loss", keep_ratio=0.0))
    with pytest.raises(ConfigError, match=r"trust.keep_ratio must be in \(0, 1\], got 0.0"):
        validate.check_tree(keep)
    validate.check_tree(DistillConfig(trust=TADConfig()))  # the defaults are valid


def test_linked_settings_that_disagree_are_refused():
    no_dsa = dataclasses.replace(DistillConfig().experts, dsa=False)
    with pytest.raises(ConfigError) as err:
        check_config(DistillConfig(experts=no_dsa))
    assert "datm.dsa=true, experts.dsa=false, eval.dsa=true disagree" in str(err.value)
    lr = dataclasses.replace(DistillConfig().experts, lr=0.02)
    with pytest.raises(ConfigError, match="datm.lr_teacher=0.01, experts.lr=0.02 disagree"):
        check_config(DistillConfig(experts=lr))


def test_eval_result_mean_needs_a_single_learning_rate():
    one = EvalResult(np.array([[0.5, 0.7]]), (0.01,), [])
    assert one.mean == pytest.approx(0.6) and one.std == pytest.approx(0.1)
    two = EvalResult(np.array([[0.5, 0.7], [0.8, 0.9]]), (0.01, 0.03), [])
    np.testing.assert_array_equal(two.at_lr(0.03), [0.8, 0.9])
    for name in ("mean", "std"):
        with pytest.raises(ValueError, match=r"2 learning rates .* at_lr\(lr\) or accuracies\[i\]"):
            getattr(two, name)
    with pytest.raises(ValueError, match="no networks were trained at lr 0.1"):
        two.at_lr(0.1)


def test_a_config_written_as_json_reads_back_equal(tmp_path):
    from jaxdd import report

    config = DistillConfig(
        noise="asymmetric:0.4",
        trust=TADConfig(kappa=0.8),
        eval_nets=("convnet", "resnet18bn"),
        eval=dataclasses.replace(DistillConfig().eval, lr_milestones=(0.5, 0.75)),
        datm=dataclasses.replace(DistillConfig().datm, threshold=math.inf),
    )
    run = report.RunDir.at(tmp_path)
    run.write_json("config.json", config)
    assert cfg.from_jsonable(DistillConfig, run.read_json("config.json")) == config
    with pytest.raises(ConfigError, match="another version"):
        cfg.from_jsonable(DistillConfig, {"no_such_setting": 1})
