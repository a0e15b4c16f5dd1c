import importlib.util
import json
import pathlib

FILE = pathlib.Path(__file__).parents[1] / "experiments" / "table.py"


def _module():
    spec = importlib.util.spec_from_file_location("experiments_table", FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(path, summary, events):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_tables_report_rows_trust_rounds_and_the_clean_row(tmp_path):
    table = _module()
    root = tmp_path / "noisy" / "symmetric0.4"
    _run(
        root / "datm",
        {"accuracies": [0.70, 0.72], "train_size": 1000, "train_label_noise": 0.4},
        [],
    )
    trust = {
        "event": "trust",
        "round": 0,
        "trusted": 600,
        "trusted_fraction": 0.6,
        "recalled": 50,
        "precision": 0.95,
        "clean_recall": 0.9,
        "recalibration_accuracy": 0.8,
    }
    init = {"event": "init", "filled": 0, "label_noise": 0.02}
    tad = {"accuracies": [0.8], "train_size": 600, "train_label_noise": 0.05}
    _run(root / "tad-datm", tad, [trust, init])
    # A baseline run lives one level down (its --out root holds a stamped run dir).
    _run(root / "erm" / "20260101-000000-baseline", {"accuracies": [0.5]}, [])
    (root / "random").mkdir()  # unfinished: left out
    _run(tmp_path / "clean", {"accuracies": [0.9]}, [])

    _run(tmp_path / "control", {"accuracies": [0.85], "train_size": 600}, [])
    text = table.tables(tmp_path / "noisy", tmp_path / "clean", {"control": tmp_path / "control"})

    lines = text.splitlines()
    assert lines[0] == "### symmetric0.4"
    body = [line for line in lines if line.startswith("| ")]
    rows = [line.split("|")[1].strip() for line in body]
    assert rows[:6] == [
        "row",
        "full-noisy ERM",
        "DATM on noisy data",
        "TAD + DATM",
        "DATM on clean labels",
        "control",
    ]
    assert "71.00 ± 1.00" in body[2] and "| 1000 |" in body[2] and "40.0" in body[2]
    # the diverted rows report the trusted split's size and noise
    assert "| 600 |" in body[3] and "| 5.0 |" in body[3] and body[3].endswith("| 2.0 |")
    assert "random IPC 10" not in text
    trust_line = next(line for line in body if "| 0 |" in line)
    assert "600 (60.0 %)" in trust_line and "80.0" in trust_line


def test_an_extra_row_named_inside_the_noise_folders_joins_only_their_tables(tmp_path):
    table = _module()
    for noise in ("symmetric0.4", "asymmetric0.4"):
        _run(tmp_path / noise / "datm", {"accuracies": [0.7]}, [])
    _run(tmp_path / "symmetric0.4" / "tad-old", {"accuracies": [0.6]}, [])
    text = table.tables(tmp_path, extra={"earlier TAD": "tad-old"})
    asym, sym = text.split("### symmetric0.4")
    assert "earlier TAD" in sym and "60.00" in sym
    assert "earlier TAD" not in asym


def test_a_noisy_validation_column_appears_when_any_row_has_one(tmp_path):
    table = _module()
    _run(tmp_path / "symmetric0.4" / "datm", {"accuracies": [0.7]}, [])
    selected = {"accuracies": [0.8, 0.82], "val_accuracies": [0.5, 0.52]}
    _run(tmp_path / "symmetric0.4" / "tad-datm", selected, [])
    lines = [line for line in table.tables(tmp_path).splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].split("|")]
    column = header.index("noisy-validation accuracy (%)")
    cells = {line.split("|")[1].strip(): line.split("|")[column].strip() for line in lines[1:]}
    assert cells == {"DATM on noisy data": "", "TAD + DATM": "51.00 ± 1.00"}


def test_cross_architecture_table_has_a_column_per_network_and_marks_gaps(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "cross_arch_table", FILE.with_name("cross_arch_table.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    both = {
        "accuracies": [0.7, 0.8],
        "networks": {
            "convnet": {"accuracies": [0.7, 0.8]},
            "vgg11": {"accuracies": [0.5, 0.6], "width_scale": 0.125},
        },
    }
    _run(tmp_path / "a", both, [])
    _run(tmp_path / "b" / "baseline-random-x", {"networks": {"convnet": {"accuracies": [0.4]}}}, [])
    rows = [("DM", "clean", tmp_path / "a"), ("random", "clean", tmp_path / "b")]
    rows.append(("missing", "clean", tmp_path / "nothing"))
    lines = module.table(rows).splitlines()
    assert lines[0] == "| set | noise | convnet | vgg11 (0.125x) |"
    assert lines[2] == "| DM | clean | 75.00 ± 5.00 | 55.00 ± 5.00 |"
    assert lines[3] == "| random | clean | 40.00 ± 0.00 | — |"
    assert len(lines) == 4
