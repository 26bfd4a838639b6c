"""`experiment --ray`: a grid as Ray tasks on a local Ray instance (2 CPUs), results written as a local sitting's."""

import json
import sys
from pathlib import Path

import pytest
from conftest import TINY_RUN, make_image_dataset

from core.artifacts.layout import COMPLETE_MARKER, EXPERIMENT_LOG, METRICS_FILE, PREDICTIONS_FILE
from core.cli import main as cli_main
from core.errors import UserError
from core.orchestrate import distributed
from core.orchestrate.distributed import RayOptions, map_dataset, parse_data_map

# Only the keys the grid needs; the rest of TINY_RUN is the quick preset's own.
SET = {"input_size": TINY_RUN["input_size"], "batch_size": TINY_RUN["batch_size"]}


def write_grid(tmp_path: Path, datasets, methods=("logreg", "knn"), seeds=(0, 1), name="art") -> tuple[Path, Path]:
    art = tmp_path / name
    grid = tmp_path / f"{name}.toml"
    grid.write_text("\n".join([
        f'artifacts = "{art}"', "[[grid]]", f"datasets = {json.dumps([str(d) for d in datasets])}",
        'backbones = ["EfficientNetLite0"]', f"methods = {json.dumps(list(methods))}",
        f"seeds = {json.dumps(list(seeds))}", 'preset = "quick"',
        "set = { " + ", ".join(f'"{k}" = {v}' for k, v in SET.items()) + " }"]) + "\n")
    return grid, art


def complete_runs(art: Path) -> dict[str, Path]:
    return {p.parent.relative_to(art).as_posix(): p.parent for p in art.glob(f"*/*/*/{COMPLETE_MARKER}")}


def no_leftovers(art: Path) -> bool:
    """No staging folder and no temporary file anywhere under the artifacts folder."""
    return not [p for p in art.rglob("*") if p.name == distributed.INCOMING_DIR or p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def ray_session(lite0_home):
    """One local Ray instance with 2 CPUs for the module (started after lite0_home set HOME and the caches)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_image_dataset(tmp_path_factory.mktemp("data") / "rays", per_class=10, seed=20)


@pytest.mark.integration
def test_a_grid_on_ray_writes_the_same_runs_as_a_local_sitting(ray_session, dataset, tmp_path):
    local_grid, local_art = write_grid(tmp_path, [dataset], name="local")
    ray_grid, ray_art = write_grid(tmp_path, [dataset], name="ray")
    assert cli_main(["experiment", str(local_grid)]) == 0
    assert cli_main(["experiment", str(ray_grid), "--ray", "--cpus-per-run", "1"]) == 0
    local, remote = complete_runs(local_art), complete_runs(ray_art)
    assert len(local) == 4 and local.keys() == remote.keys()
    for name, here in local.items():
        there = remote[name]
        assert json.loads((here / METRICS_FILE).read_text()) == json.loads((there / METRICS_FILE).read_text())
        assert (here / PREDICTIONS_FILE).read_bytes() == (there / PREDICTIONS_FILE).read_bytes()
    assert sorted(p.name for p in (ray_art / "rays" / "splits").iterdir()) == \
        sorted(p.name for p in (local_art / "rays" / "splits").iterdir())
    assert no_leftovers(ray_art)
    # As a local sitting: the dataset audited before its runs, compared after them.
    assert (ray_art / "rays" / "audit.json").is_file() and (ray_art / "rays" / "mcnemar.json").is_file()
    last = json.loads((ray_art / EXPERIMENT_LOG).read_text().splitlines()[-1])
    assert last["mode"] == "ray" and last["finished"] and len(last["run_log"]) == 4
    assert all(r["outcome"] == "complete" and r["node"] and r["wall_time_s"] > 0 for r in last["run_log"])
    assert {r["threads"] for r in last["run_log"]} == {1}  # TensorFlow's threads: the run's one CPU
    assert last["run_time_s"] > 0 and last["speedup"] > 0
    # A second sitting schedules nothing: every run is complete here.
    assert cli_main(["experiment", str(ray_grid), "--ray"]) == 0
    assert json.loads((ray_art / EXPERIMENT_LOG).read_text().splitlines()[-1])["run_log"] == []


@pytest.mark.integration
@pytest.mark.slow
def test_a_task_whose_worker_is_killed_is_retried_and_the_run_written_once(ray_session, dataset, tmp_path, capsys):
    grid, art = write_grid(tmp_path, [dataset], methods=["logreg"], seeds=[3])
    marker = tmp_path / "crashed"
    options = RayOptions(max_retries=1, env={distributed.CRASH_ONCE_ENV: str(marker)})
    assert distributed.run_experiment_on_ray(grid, emit=print, options=options) == 0
    assert marker.is_file()  # the first attempt did kill its worker
    (run,) = complete_runs(art).values()
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events.count("started") == 1 and events.count("complete") == 1 and "resumed" not in events
    assert no_leftovers(art)


@pytest.mark.integration
def test_a_dataset_the_workers_cannot_read_fails_its_runs_and_the_others_finish(ray_session, dataset, tmp_path, capsys):
    other = make_image_dataset(tmp_path / "elsewhere", per_class=10, seed=21)
    grid, art = write_grid(tmp_path, [dataset, other], methods=["logreg"], seeds=[0])
    missing = tmp_path / "not-on-the-workers"
    assert cli_main(["experiment", str(grid), "--ray", "--data-map", f"{other}={missing}"]) == 1
    out = capsys.readouterr().out
    assert "1 runs failed:" in out and str(missing) in out and "Traceback" not in out
    assert [name.split("/")[0] for name in complete_runs(art)] == ["rays"]


@pytest.mark.integration
@pytest.mark.slow
def test_ctrl_c_while_a_run_comes_home_leaves_no_partial_run(ray_session, dataset, tmp_path, monkeypatch):
    grid, art = write_grid(tmp_path, [dataset], methods=["logreg", "knn"], seeds=[5])

    def interrupted(new, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "_replace_folder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distributed.run_experiment_on_ray(grid, emit=print)
    assert not complete_runs(art) and no_leftovers(art)
    assert json.loads((art / EXPERIMENT_LOG).read_text().splitlines()[-1])["finished"]
    monkeypatch.undo()
    assert distributed.run_experiment_on_ray(grid, emit=print) == 0  # the next sitting does them
    assert len(complete_runs(art)) == 2


@pytest.mark.unit
def test_data_map_replaces_a_path_prefix_and_rejects_a_malformed_item():
    pairs = parse_data_map(["/home/me/data=/mnt/shared/data", "/x/=/y/"])
    assert map_dataset("/home/me/data/flowers", pairs) == "/mnt/shared/data/flowers"
    assert map_dataset("/home/me/database/a", pairs) == "/home/me/database/a"  # a prefix of a name is not a match
    assert map_dataset("/x/a", pairs) == "/y/a"
    for bad in ("nomap", "=/mnt", "/a="):
        with pytest.raises(UserError, match="LOCAL=REMOTE"):
            parse_data_map([bad])


@pytest.mark.unit
def test_ray_missing_is_one_line(tmp_path, monkeypatch, capsys):
    grid, _ = write_grid(tmp_path, [tmp_path / "data"], methods=["logreg"], seeds=[0])
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert cli_main(["experiment", str(grid), "--ray"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {distributed.RAY_MISSING}"


@pytest.mark.unit
def test_bad_ray_options_are_refused_by_the_parser(tmp_path, capsys):
    for args in (["--cpus-per-run", "0"], ["--gpus-per-run", "-1"], ["--max-retries", "x"]):
        with pytest.raises(SystemExit) as exc:
            cli_main(["experiment", "grid.toml", "--ray", *args])
        assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.integration
def test_a_run_started_here_travels_to_its_worker_and_resumes_there(ray_session, dataset, tmp_path):
    from core.artifacts.runs import RunFolder
    from core.orchestrate.experiment import load_grid

    grid, art = write_grid(tmp_path, [dataset], methods=["logreg"], seeds=[7])
    (planned,) = load_grid(grid).runs
    folder = RunFolder.for_config(planned.config, art)
    folder.start(planned.config)  # a run interrupted here: its config written, no result
    folder.event("started", run=str(folder.path))
    folder.unlock()
    assert distributed.run_experiment_on_ray(grid, emit=print) == 0
    events = [json.loads(line)["event"] for line in (folder.path / "events.jsonl").read_text().splitlines()]
    assert events[:2] == ["started", "resumed"] and events[-1] == "complete"
    assert folder.is_complete() and no_leftovers(art)


@pytest.mark.integration
@pytest.mark.slow
def test_a_grid_can_reserve_more_cpus_per_run_and_tensorflow_uses_that_many(ray_session, dataset, tmp_path):
    grid, art = write_grid(tmp_path, [dataset], methods=("logreg",), seeds=(0,), name="wide")
    grid.write_text(grid.read_text() + "cpus_per_run = 2\n")
    assert cli_main(["experiment", str(grid), "--ray"]) == 0
    last = json.loads((art / EXPERIMENT_LOG).read_text().splitlines()[-1])
    assert [r["threads"] for r in last["run_log"]] == [2]


@pytest.mark.integration
def test_a_ray_sitting_makes_the_files_analyses_after_its_runs(ray_session, dataset, tmp_path, monkeypatch):
    grid, art = write_grid(tmp_path, [dataset], methods=("finetune",), seeds=(0,), name="analysed")
    overrides = "{ " + ", ".join(f'"{k}" = {v}' for k, v in SET.items()) + " }"
    grid.write_text(grid.read_text() + f'[[operating_point]]\ndatasets = ["{dataset}"]\nbackbone = "EfficientNetLite0"\n'
                    f'preset = "quick"\nset = {overrides}\npositive = ["red"]\nsensitivity = 0.9\n')
    seen = []

    def analyses(planned, root, emit):
        seen.append((len(planned), sorted(p.name for p in root.glob(f"*/*/*/{COMPLETE_MARKER}"))))
        return [], []

    monkeypatch.setattr(distributed, "run_analyses", analyses)
    assert distributed.run_experiment_on_ray(grid, emit=print) == 0
    assert seen == [(1, [COMPLETE_MARKER])]  # once, after the run came home
