"""torch_impl behind the project's trainer: the same steps as ref's (for every model), runs that resume
on the other implementation, data-parallel training equal to one process, and the CLI's --impl torch."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ref
from ref.config import MODELS
from srnn import checkpoint, cli, evaluation, loop, music, rundir
from srnn.config import TrainConfig
from srnn.engine import RefEngine
from tests.strategies import stream_dataset

torch = pytest.importorskip("torch")  # the torch extra
from torch_impl.engine import TorchEngine  # noqa: E402

ROOT = Path(__file__).parents[1]
TINY = ref.Config(x_dim=88, d_dim=4, z_dim=2, a_dim=4, h_dim=8, embed_layers=1, mlp_layers=1)
TINY_MODELS = {model: dataclasses.replace(TINY, model=model) for model in MODELS}  # TINY of every model
TINY_FLAGS = ["--preset", "small", "--d-dim", "4", "--z-dim", "2", "--a-dim", "4", "--h-dim", "8",
              "--embed-layers", "1", "--mlp-layers", "1"]
# round-off of two float64 implementations, grown through a few dozen Adam steps
RTOL, ATOL = 1e-7, 1e-10


@pytest.fixture
def stream_data(monkeypatch):
    dataset = stream_dataset()
    monkeypatch.setattr(loop, "load_dataset", lambda name, variant, data_dir: dataset)
    return dataset


def assert_same_params(a, b):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("model", list(TINY_MODELS))
def test_torch_trainer_takes_the_steps_of_the_ref_trainer(tmp_path, stream_data, model):
    """Same seed, same data order and noise, same Adam (with weight decay): the same parameters
    after two epochs of the stream layout (states carried across batches), the same metrics along the way."""
    config = TINY_MODELS[model]
    tc = TrainConfig(epochs=2, batch_size=4, iw_samples=3, lr=3e-3, kl_anneal_epochs=2, lr_decay_start=1,
                     weight_decay=0.5)
    metrics = {
        "ref": loop.train(tmp_path / "ref", config, tc),
        "torch": loop.train(tmp_path / "torch", config, tc, engine=TorchEngine(config, device="cpu")),
    }
    assert_same_params(checkpoint.load(tmp_path / "ref" / "last.npz").params,
                       checkpoint.load(tmp_path / "torch" / "last.npz").params)
    for (r, t) in zip(rundir.read_history(tmp_path / "ref"), rundir.read_history(tmp_path / "torch")):
        assert r["train_elbo"] == pytest.approx(t["train_elbo"], rel=1e-9)
        assert r["valid"]["sequence_averaged"] == pytest.approx(t["valid"]["sequence_averaged"], rel=1e-9)
    for key in ("elbo", "iw"):
        assert metrics["torch"][key]["frame_weighted"] == pytest.approx(metrics["ref"][key]["frame_weighted"], rel=1e-9)
    saved = json.loads((tmp_path / "torch" / "config.json").read_text())
    assert saved["implementation"]["impl"] == "torch" and saved["implementation"]["processes"] == 1


@pytest.mark.parametrize("model", list(TINY_MODELS))
def test_a_run_resumes_on_the_other_implementation(tmp_path, stream_data, model):
    config = TINY_MODELS[model]
    tc1, tc2 = (TrainConfig(epochs=n, batch_size=4, iw_samples=1, lr=3e-3) for n in (1, 2))
    loop.train(tmp_path / "straight", config, tc2)
    loop.train(tmp_path / "switched", config, tc1, engine=TorchEngine(config, device="cpu"))
    loop.train(tmp_path / "switched", config, tc2, resume=True)  # the second epoch on ref
    straight, switched = (checkpoint.load(tmp_path / run / "last.npz") for run in ("straight", "switched"))
    assert_same_params(straight.params, switched.params)
    assert_same_params(straight.state["adam"]["v"], switched.state["adam"]["v"])
    assert straight.state["adam"]["step"] == switched.state["adam"]["step"] == 6


def test_torch_engine_meets_the_engine_protocol_and_is_made_by_the_registry():
    from srnn.engine import Engine, EngineOptions, make_engine

    engine = make_engine("torch", TINY, "float64", EngineOptions(device="cpu"))
    assert isinstance(engine, TorchEngine) and isinstance(engine, Engine)
    assert engine.describe()["impl"] == "torch" and engine.describe()["device"] == "cpu"


@pytest.mark.parametrize("model", list(TINY_MODELS))
def test_evaluation_and_sampling_agree_between_the_implementations(stream_data, model):
    config = TINY_MODELS[model]
    params = {k: v + 0.1 for k, v in ref.init_params(config, 3).items()}
    engines = {"ref": RefEngine(config).load(params), "torch": TorchEngine(config, device="cpu").load(params)}
    m = {name: evaluation.evaluate(e, stream_data.test, 5, seed=2) for name, e in engines.items()}
    for key in ("elbo", "iw"):
        for metric in ("sequence_averaged", "frame_weighted", "sequence_averaged_se"):
            assert m["torch"][key][metric] == pytest.approx(m["ref"][key][metric], rel=1e-9), (key, metric)
    rolls = {name: music.generate(e, 3, 20, seed=4) for name, e in engines.items()}
    np.testing.assert_array_equal(rolls["torch"], rolls["ref"])


def test_float32_torch_training_stays_close_to_float64(tmp_path, stream_data):
    tc = TrainConfig(epochs=1, batch_size=4, iw_samples=1, lr=3e-3, dtype="float32")
    loop.train(tmp_path / "32", TINY, tc, engine=TorchEngine(TINY, "float32", device="cpu"))
    loop.train(tmp_path / "64", TINY, TrainConfig(**{**tc.to_dict(), "dtype": "float64"}),
                engine=TorchEngine(TINY, device="cpu"))
    p32, p64 = (checkpoint.load(tmp_path / run / "last.npz").params for run in ("32", "64"))
    assert all(p32[k].dtype == np.float32 for k in p32)
    # three Adam steps of size ≤ lr: float32 round-off moves a parameter far less than one step
    assert max(np.abs(p32[k] - p64[k]).max() for k in p64) < 1e-4


def _srnn(*args, launcher=(sys.executable, "-m", "srnn.cli")):
    return subprocess.run([*launcher, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_data_parallel_training_with_two_processes_equals_one_process(tmp_path):
    """torchrun, two CPU processes over gloo, each with half of every batch: the parameters of
    one process on the whole batch, to round-off."""
    flags = [*TINY_FLAGS, "--impl", "torch", "--device", "cpu", "--epochs", "2", "--batch-size", "48",
             "--iw-samples", "2", "--lr", "3e-3", "--kl-anneal-epochs", "1"]
    single = _srnn("train", *flags, "--run-dir", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "srnn.cli")
    parallel = _srnn("train", *flags, "--run-dir", tmp_path / "two", launcher=torchrun)
    assert parallel.returncode == 0, parallel.stderr
    assert parallel.stdout.count("epoch 2/2") == 1, "only rank 0 prints"
    one, two = (checkpoint.load(tmp_path / run / "last.npz") for run in ("one", "two"))
    assert_same_params(one.params, two.params)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["implementation"]["processes"] == 2
    for r1, r2 in zip(rundir.read_history(tmp_path / "one"), rundir.read_history(tmp_path / "two")):
        assert r1["train_elbo"] == pytest.approx(r2["train_elbo"], rel=1e-9)


def test_data_parallel_training_stops_early_where_one_process_does(tmp_path):
    """Only rank 0 validates; every process stops with it (Engine.any_process)."""
    flags = [*TINY_FLAGS, "--impl", "torch", "--device", "cpu", "--epochs", "10", "--batch-size", "48",
             "--iw-samples", "2", "--lr", "0.1", "--kl-anneal-epochs", "1", "--valid-every", "1", "--patience", "1"]
    single = _srnn("train", *flags, "--run-dir", tmp_path / "one")
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "srnn.cli")
    parallel = _srnn("train", *flags, "--run-dir", tmp_path / "two", launcher=torchrun)
    assert single.returncode == 0 and parallel.returncode == 0, single.stderr + parallel.stderr
    assert single.stdout.count("stopping early") == parallel.stdout.count("stopping early") == 1
    one, two = (rundir.read_history(tmp_path / run) for run in ("one", "two"))
    assert 1 < len(one) == len(two) < 10 and loop.patience_spent(one, 1) and not loop.patience_spent(one[:-1], 1)


def test_cli_runs_every_command_with_impl_torch(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--impl", "torch", "--device", "cpu"]
    assert cli.main(["train", *TINY_FLAGS, *common, "--epochs", "1", "--batch-size", "256", "--iw-samples", "2",
                     "--run-dir", str(run)]) == 0
    assert cli.main(["train", *common, "--run-dir", str(run), "--resume", "--epochs", "2"]) == 0
    assert cli.main(["evaluate", *common, "--run-dir", str(run), "--iw-samples", "2"]) == 0
    torch_out = capsys.readouterr().out.splitlines()[-3:]
    assert cli.main(["evaluate", "--run-dir", str(run), "--iw-samples", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == torch_out, "ref prints the same metrics"
    assert cli.main(["sample", *common, "--run-dir", str(run), "--num", "2", "--length", "8",
                     "--out", str(tmp_path / "samples")]) == 0
    assert len(list((tmp_path / "samples").glob("*.mid"))) == 2
    assert [r["epoch"] for r in rundir.read_history(run)] == [1, 2]


def test_bf16_needs_float32_parameters():
    with pytest.raises(ref.ConfigError, match="float32"):
        TorchEngine(TINY, "float64", device="cpu", bf16=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_takes_the_steps_of_the_cpu(tmp_path, stream_data):
    tc = TrainConfig(epochs=1, batch_size=4, iw_samples=2, lr=3e-3)
    for device in ("cpu", "cuda"):
        loop.train(tmp_path / device, TINY, tc, engine=TorchEngine(TINY, device=device))
    assert_same_params(*(checkpoint.load(tmp_path / d / "last.npz").params for d in ("cpu", "cuda")))
