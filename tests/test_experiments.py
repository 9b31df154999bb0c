"""The experiments (issue 14) on the current backend: ``--quick`` runs of each on the
committed Fashion-MNIST sample write the report, JSON and PNG, the report states the
JSON's numbers; the trainer options they rely on (--time-limit, --train-subset,
--test-subset); every full arm is a valid training run."""

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets.experiments import EXPERIMENTS, common, degradation, planned, select
from kerasnets.experiments.cli import main as experiment_main
from kerasnets.training import TrainingError, resolve_config
from kerasnets.training.cli import main as train_main
from kerasnets.training.prepare import prepare
from tests.conftest import SAMPLE_DIR

# The quick runs check the experiment code (arms, report, JSON, plot), which sits above the
# backend; every backend's training itself is tested in test_training.py. Torch: no compile.
ONCE = pytest.mark.one_backend("torch")



def run_quick(tmp_path, name, arms):
    argv = [name, "--quick", "--arms", ",".join(arms), "--data-dir", str(SAMPLE_DIR),
            "--output-dir", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "report")]
    assert experiment_main(argv) == 0
    report = tmp_path / "report"
    data = json.loads((report / f"{name}.json").read_text())
    text = (report / f"{name}.md").read_text()
    assert (report / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert data["quick"] and "`--quick` run" in text
    assert data["backend"] == keras.backend.backend()
    assert [a["name"] for a in data["arms"]] == arms
    for arm in data["arms"]:  # each arm is a complete trainer run, kept
        assert arm["metrics"]["status"] == "finished"
        assert Path(arm["run_dir"]).parent.resolve() == (tmp_path / "runs").resolve()
        assert len(arm["history"]) == common.QUICK["epochs"]
        assert arm["run_dir"] in text
    return data, text


@ONCE
def test_degradation_quick_report_states_the_json(tmp_path):
    data, text = run_quick(tmp_path, "degradation", ["resnet20"])  # one: CI time
    for arm in data["arms"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {arm['label']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == common.percent(1 - arm["history"][-1]["accuracy"])
        assert cells[2] == common.percent(1 - arm["history"][-1]["val_accuracy"])
        assert cells[5] == f"{arm['metrics']['trainable_params']:,}"
    assert "the plain pair was not run" in text  # the other arms were left out
    assert arm["settings"]["test_subset"] == common.QUICK["test_subset"]
    # --report-only writes the same report again from the JSON, training nothing
    report = tmp_path / "report"
    (report / "degradation.md").unlink()
    assert experiment_main(["degradation", "--report-only", "--report-dir", str(report)]) == 0
    assert (report / "degradation.md").read_text() == text
    assert experiment_main(["budget", "--report-only", "--report-dir", str(report)]) == 2


def _arm(name, train_errors):
    return {"name": name, "history": [{"epoch": i + 1, "accuracy": 1 - e,
                                       "val_accuracy": 1 - e} for i, e in
                                      enumerate(train_errors)]}


@pytest.mark.parametrize("deep_plain, deep_res, plain_verdict, res_verdict", [
    (0.30, 0.10, "as the paper found", "as the paper found"),
    (0.10, 0.30, "unlike the paper", "unlike the paper")])
def test_degradation_verdict_follows_the_numbers(deep_plain, deep_res, plain_verdict,
                                                 res_verdict):
    arms = {"plain20": _arm("plain20", [0.5, 0.2]), "plain56": _arm("plain56", [0.6, deep_plain]),
            "resnet20": _arm("resnet20", [0.5, 0.2]),
            "resnet56": _arm("resnet56", [0.6, deep_res])}
    plain, residual, shortcuts, cost = degradation.findings(arms)
    assert plain_verdict in plain and f"{100 * deep_plain:.2f}% at 56 layers" in plain
    assert res_verdict in residual and "vs 20.00% at 20" in residual
    better = "lower: residual learning eases" if deep_res < deep_plain else "not lower"
    assert f"from {100 * deep_plain:.2f}% (plain) to {100 * deep_res:.2f}% (residual), " \
        f"{better}" in shortcuts
    assert f"plain nets {100 * (deep_plain - 0.2):+.2f} points" in cost


@ONCE
def test_budget_quick_reports_accuracy_and_speed(tmp_path):
    data, text = run_quick(tmp_path, "budget", ["lenet5"])
    for arm in data["arms"]:
        metrics = arm["metrics"]
        assert f"| {arm['label']} | {metrics['test_accuracy']:.4f} |" in text
        assert metrics["train_images_per_second"] > 0
    best = max(data["arms"], key=lambda a: a["metrics"]["test_accuracy"])
    assert f"best in the budget: {best['label']}" in text
    lenet = next(a for a in data["arms"] if a["name"] == "lenet5")
    assert lenet["settings"]["lr"] == pytest.approx(0.09)  # d2l's 0.9 x (1 - momentum)


@ONCE
def test_normalization_quick_times_each_arm(tmp_path):
    data, text = run_quick(tmp_path, "normalization", ["batch-b8", "group-b8"])
    backend = keras.backend.backend()
    assert set(data["timings"]) == {backend}
    for arm in data["arms"]:
        assert data["timings"][backend][arm["name"]]["train_images_per_second"] > 0
        assert arm["settings"]["model_options"]["norm"] == arm["name"].split("-")[0]
    assert "(batch 8: 1 timed steps after 1 warm-up steps)" in text  # as recorded


def test_normalization_times_a_small_batch_over_as_many_images():
    from kerasnets.experiments import normalization

    assert normalization.timing_steps(normalization.TIMING, 128) == normalization.TIMING
    assert normalization.timing_steps({"steps": 10, "warmup": 3}, 8) == \
        {"steps": 160, "warmup": 48}


@ONCE
def test_cardinality_quick_reports_params_and_speed(tmp_path):
    data, text = run_quick(tmp_path, "cardinality", ["c1", "c4"])
    backend = keras.backend.backend()
    for arm in data["arms"]:
        assert f"{arm['metrics']['trainable_params']:,}" in text
        assert data["timings"][backend][arm["name"]]["train_images_per_second"] > 0


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_full_arm_is_a_valid_run(name, tmp_path):
    """The full settings (in one place per experiment) resolve to a valid TrainConfig
    for every arm, and --quick keeps the arms and only shortens them."""
    module = EXPERIMENTS[name]
    arms = select(module)
    assert len({a.name for a in arms}) == len(arms) > 1
    for arm in arms:
        full = common.arm_settings(arm, module.SETTINGS, quick=False, output_dir=tmp_path,
                                   data_dir=None, stamp="x")
        quick = common.arm_settings(arm, module.SETTINGS, quick=True, output_dir=tmp_path,
                                    data_dir=None, stamp="x")
        config = resolve_config(full)
        assert config.model == arm.settings.get("model", module.SETTINGS.get("model"))
        assert resolve_config(quick).steps_per_epoch == common.QUICK["steps_per_epoch"]
        assert full["run_name"] == quick["run_name"] == f"{arm.name}-x"


def _lenet_arm_settings(tmp_path, **settings):
    return {"model": "lenet5", "data_dir": str(SAMPLE_DIR), "download": False, "epochs": 2,
            "steps_per_epoch": 2, "batch_size": 32, "test_subset": 100, "verbose": "0",
            "output_dir": str(tmp_path), **settings}


def test_a_diverged_arm_is_a_result_and_finished_arms_are_reused(tmp_path):
    """An arm whose loss becomes NaN is recorded as diverged (the experiment goes on
    and its report says so); --reuse-runs reads back a run of the same settings, and
    only of the same settings."""
    arm = common.Arm("blowup", "lr 1e9", {})
    record = common.train_arm(arm, _lenet_arm_settings(tmp_path, lr=1e9, run_name="blowup-e-1"))
    assert record["diverged"].startswith("loss became NaN at epoch")
    assert common.error_text(record, "test") == "diverged"
    assert Path(record["run_dir"]).name == "blowup-e-1"

    ok = common.Arm("ok", "lr 0.01", {})
    first = common.train_arm(ok, _lenet_arm_settings(tmp_path, lr=0.01, run_name="ok-e-1"),
                             reuse_prefix="ok-e-")
    assert "diverged" not in first and "reused" not in first
    again = common.train_arm(ok, _lenet_arm_settings(tmp_path, lr=0.01, run_name="ok-e-2"),
                             reuse_prefix="ok-e-")
    assert again["reused"] and again["run_dir"] == first["run_dir"]
    assert again["history"] == first["history"]
    other = common.train_arm(ok, _lenet_arm_settings(tmp_path, lr=0.02, run_name="ok-e-3"),
                             reuse_prefix="ok-e-")
    assert "reused" not in other and Path(other["run_dir"]).name == "ok-e-3"
    assert common.train_arm(arm, _lenet_arm_settings(tmp_path, lr=1e9, run_name="blowup-e-2"),
                            reuse_prefix="blowup-e-")["reused"]  # a divergence is a result too


def test_a_plan_is_kept_and_reused_only_for_the_same_settings(tmp_path, monkeypatch):
    """budget plans each arm's epochs from a speed probe; --reuse-runs must keep that
    plan (a new probe plans other epochs, and the finished runs would not match)."""
    calls = []

    class Planned:
        NAME = "fake"

        @staticmethod
        def plan(arms, settings, quick, backend, time_models):
            calls.append([a.name for a in arms])
            for a in arms:
                settings[a.name]["epochs"] = 10 + len(calls)
            return {a.name: {"probe": len(calls)} for a in arms}

    arms = [common.Arm("a", "A"), common.Arm("b", "B")]

    def plan(reuse, lr_b=0.1):
        settings = {a.name: {"model": "lenet5", "lr": lr_b if a.name == "b" else 0.1,
                             "run_name": f"{a.name}-{len(calls)}"} for a in arms}
        measured = planned(Planned, arms, settings, quick=False, backend="torch",
                           output_dir=tmp_path / "runs", reuse=reuse)
        return {a: s["epochs"] for a, s in settings.items()}, measured

    assert plan(reuse=True) == ({"a": 11, "b": 11}, {"a": {"probe": 1}, "b": {"probe": 1}})
    assert (tmp_path / "runs" / "fake-plan.json").is_file()
    assert plan(reuse=True) == ({"a": 11, "b": 11}, {"a": {"probe": 1}, "b": {"probe": 1}})
    assert calls == [["a", "b"]]  # the run name differs; the settings do not
    assert plan(reuse=True, lr_b=0.2)[0] == {"a": 11, "b": 12}  # b's settings changed
    assert calls[-1] == ["b"]
    assert plan(reuse=False)[0] == {"a": 13, "b": 13}  # without reuse: measured again
    from kerasnets.training import artifacts
    monkeypatch.setattr(artifacts, "cpu_model", lambda: {"cpu_model": "another CPU"})
    assert plan(reuse=True)[0] == {"a": 14, "b": 14}  # a speed measured on another CPU


def test_the_cpu_is_recorded_from_cpuinfo(tmp_path):
    from kerasnets.training.artifacts import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma "
                    "avx512f avx512_vnni\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n")
    assert cpu_model(info) == {"cpu_model": "AMD EPYC",
                               "cpu_features": ["avx2", "fma", "avx512f", "avx512_vnni"]}
    assert cpu_model(tmp_path / "none") == {}


def test_cardinality_says_when_its_spread_is_noise():
    from kerasnets.experiments import cardinality

    def arms(*accuracies):
        return [{"name": f"c{i}", "label": f"c{i}", "history": [
            {"epoch": 1, "accuracy": a, "val_accuracy": a}]} for i, a in enumerate(accuracies)]

    data = {"settings": {"test_subset": 2000}}
    line = cardinality.noise(data, arms(0.836, 0.8525, 0.84))
    assert line.startswith("the test accuracies span 1.65 points; with one run per arm on "
                           "2,000 test images, a difference of two accuracies has a standard "
                           "error of about 1.15 points")
    assert line.endswith("within that noise: this run cannot rank the cardinalities")
    assert cardinality.noise(data, arms(0.80, 0.85)).endswith("wider than that noise")


def test_normalization_findings_name_a_diverged_arm():
    def arm(name, test_errors, diverged=None):
        settings = {"lr": 0.1, "train_subset": 5000, "batch_size": int(name.split("-b")[1])}
        result = {"name": name, "label": name, "settings": settings, "history": [
            {"epoch": i + 1, "accuracy": 1 - e, "val_accuracy": 1 - e}
            for i, e in enumerate(test_errors)]}
        return {**result, "diverged": diverged} if diverged else result

    from kerasnets.experiments import normalization
    lines = normalization.findings([
        arm("batch-b128", [0.2, 0.1]), arm("group-b128", [0.2, 0.12]),
        arm("batch-b8", [0.3, 0.2]), arm("group-b8", [0.2, 0.13]),
        arm("none-b128", [0.9, 0.9], diverged="loss became NaN at epoch 2, batch 15")])
    assert lines[0].startswith("none-b128 diverged (loss became NaN at epoch 2, batch 15, "
                               "at learning rate 0.1)")
    assert "BN's final test error goes from 10.00% at batch 128 to 20.00% at batch 8" in lines[1]
    assert lines[2] == "BN loses more than GN at the small batch, as the paper found"
    assert lines[3].startswith("in the same epochs, batch 8 makes 16x the optimizer steps "
                               "of batch 128 (1,250 vs 80); with that, batch 8 ended with "
                               "the lower test error for 0 of 2 layers (none)")
    assert lines[4] == "lowest final test error: batch-b128 (10.00%)"  # not the diverged one


def test_bad_experiment_input_is_one_clear_line(tmp_path, capsys):
    assert experiment_main(["degradation", "--quick", "--arms", "resnet21",
                            "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no arm(s) resnet21" in err and "plain20" in err
    with pytest.raises(SystemExit):
        experiment_main(["degradaton"])
    assert "invalid choice" in capsys.readouterr().err


def test_time_limit_stops_the_run_and_keeps_it(tmp_path):
    """A run past its --time-limit stops at a batch end, is saved and tested like a
    finished run, and records the (fractional) epochs it reached."""
    rc = train_main(["lenet5", "--data-dir", str(SAMPLE_DIR), "--no-download",
                     "--epochs", "3", "--batch-size", "50", "--verbose", "0",
                     "--time-limit", "0.01s", "--output-dir", str(tmp_path)])
    assert rc == 0
    run = next(Path(tmp_path).iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["time_limit_reached"] is True
    assert metrics["time_limit_seconds"] == pytest.approx(0.01)
    assert metrics["epochs_reached"] == pytest.approx(1 / 20)  # 1,000 images, batch 50
    assert metrics["test_accuracy"] > 0 and (run / "model.keras").exists()
    assert not (run / "backup").exists()
    assert len((run / "history.csv").read_text().splitlines()) == 2  # the partial epoch


def test_time_limit_and_subsets_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["lenet5", "--time-limit", "15"])
    assert "expected a positive time like 90s, 15m or 1.5h; got '15'" in \
        capsys.readouterr().err
    config = resolve_config(dict(model="lenet5", data_dir=str(SAMPLE_DIR), download=False,
                                 train_subset=200, test_subset=100))
    data = prepare(config).data
    assert len(data.x_train) == 200 and len(data.x_test) == 100
    full = prepare(resolve_config(dict(model="lenet5", data_dir=str(SAMPLE_DIR),
                                       download=False))).data
    share = np.bincount(full.y_train) * 200 / len(full.y_train)  # stratified
    assert np.all(np.abs(np.bincount(data.y_train) - share) < 1)
    again = prepare(config).data  # seeded
    assert np.array_equal(again.x_train, data.x_train)
    too_many = resolve_config(dict(model="lenet5", data_dir=str(SAMPLE_DIR), download=False,
                                   train_subset=5000))
    with pytest.raises(TrainingError, match=re.escape(
            "--train-subset 5000 is not less than the 1000 train images")):
        prepare(too_many)


def test_budget_plans_its_schedule_in_steps_not_whole_epochs():
    """A network for which 1.74 epochs fit the budget gets 2 epochs to run and a cosine
    that ends after 1.74 of them (rounding down to 1 epoch left it 43% of its budget
    unused); the schedule reaches zero at that step."""
    from kerasnets.experiments import budget
    from kerasnets.training.optim import learning_rate

    arm = common.Arm("densenet121", "DenseNet-121")
    images = budget.TRAIN_IMAGES * (1 - 0.05)
    ips = 1.74 * images / (budget.SCHEDULE_FILL * budget.BUDGET_SECONDS)
    settings = {arm.name: {"model": "densenet121", "batch_size": 128, "val_fraction": 0.05}}
    budget.plan([arm], settings, quick=False, backend="torch",
                time_models=lambda specs, backends: {
                    "torch": {arm.name: {"train_images_per_second": ips}}})
    assert settings[arm.name]["epochs"] == 2
    assert settings[arm.name]["schedule_epochs"] == pytest.approx(1.74)
    assert settings[arm.name]["warmup_epochs"] == pytest.approx(0.348)
    schedule = learning_rate("cosine", lr=0.1, steps_per_epoch=100, epochs=1.74,
                             warmup_epochs=0.348)
    assert float(schedule(35)) == pytest.approx(0.1, abs=1e-3)  # the end of the warm-up
    assert float(schedule(174)) == pytest.approx(0.0, abs=1e-7)
    assert float(schedule(150)) > 1e-3


def test_budget_probes_the_model_the_trainer_builds():
    """The speed probe times each arm as train.py builds it, recipe included: ResNet-18
    with the modern recipe's small-input stem (probed without it: 233 images/s, trained
    at 41, its cosine cut at a fifth), LeNet-5 with ReLU and max-pooling plus the arm's
    own BatchNorm, AlexNet at the arm's 63 pixels."""
    from kerasnets.experiments import budget

    settings = {a.name: {"model": a.settings["model"], "batch_size": 128,
                         "dataset": "fashion_mnist", "recipe": "modern", **a.settings}
                for a in budget.arms()}
    probes = {}
    budget.plan(list(budget.arms()), settings, quick=False, backend="torch",
                time_models=lambda specs, backends: probes.update(
                    {s["key"]: s for s in specs}) or {"torch": {
                        s["key"]: {"train_images_per_second": 100.0} for s in specs}})
    assert probes["resnet18"]["options"] == {"small_input": True}
    assert probes["resnet18_imagenet_stem"]["options"] == {"small_input": False}
    assert probes["bn_lenet"]["options"] == {"activation": "relu", "pool": "max",
                                             "norm": "batch"}
    assert (probes["alexnet"]["image_size"], probes["alexnet"]["options"]) == (63, {})
    assert probes["googlenet"]["image_size"] == 28
    assert all(p["batch_size"] == 128 and p["channels"] == 1 for p in probes.values())


def test_schedule_epochs_sets_where_the_trainers_cosine_ends():
    """--schedule-epochs 1.5 with 10 steps an epoch: the cosine reaches zero at step 15
    while the run may go on to --epochs (a time budget stops it); without it the
    schedule spans all --epochs."""
    from kerasnets.training.compile import compile_for_training

    def final_lr(**options):
        config = resolve_config({"model": "lenet5", "recipe": "modern", "epochs": 3,
                                 "warmup_epochs": 0, **options})
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        compile_for_training(model, config, steps=10)
        schedule = model.optimizer._learning_rate
        return float(schedule(15)), float(schedule(30))

    assert final_lr(schedule_epochs=1.5) == (pytest.approx(0.0, abs=1e-7),) * 2
    at_15, at_30 = final_lr()
    assert at_15 > 0.01 and at_30 == pytest.approx(0.0, abs=1e-7)


def test_budget_says_where_its_plan_missed():
    """The report names a network whose cosine the budget cut (with the learning rate
    it was at) and one that ended before the budget; a --quick run says neither."""
    from kerasnets.experiments import budget

    def arm(label, reached, planned, seconds):
        return {"label": label, "name": label, "metrics": {
            "epochs_reached": reached, "wall_seconds": seconds, "test_accuracy": 0.9},
            "settings": {"schedule_epochs": planned, "warmup_epochs": 2, "epochs": 95}}

    data = {"settings": {"time_limit": "15m"}, "arms": [
        arm("LeNet-5", 77.0, 94.064, 900.5), arm("BN-LeNet", 40.0, 40.0, 600.0),
        arm("VGG-11", 0.64, 0.642, 900.1)]}
    lines = budget.schedule_ends(data)
    assert len(lines) == 2
    assert "LeNet-5 at 77.00 of 94.064 epochs (learning rate at 8% of its peak)" in lines[0]
    assert "VGG-11" not in " ".join(lines)
    assert lines[1].endswith("before the 15m: BN-LeNet after 10.0 minutes")
    assert budget.schedule_ends({"settings": {"time_limit": None}, "arms": []}) == []
    assert budget.cosine_left(1.0, 10, 2) == 0.5 and budget.cosine_left(10, 10, 2) == 0.0
