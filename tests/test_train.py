"""ref.optim against hand-computed values, and srnn's training loop: exact resume, carried
states in the stream layout, determinism, the run directory, evaluation's metrics."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

import ref
from ref import optim
from ref.errors import ConfigError, DataError
import srnn.engine
from srnn import checkpoint, data, evaluation, loop, rundir
from srnn.config import TrainConfig
from srnn.engine import RefEngine
from srnn.splits import Batch, Dataset, Split, as_streams
from tests.strategies import CONFIGS, perturbed_params, random_batch, stream_dataset

DATA_DIR = Path(os.environ.get("SRNN_DATA_DIR") or Path(__file__).parents[1] / ".." / "shared" / "data")
TINY = ref.Config(x_dim=88, d_dim=4, z_dim=2, a_dim=4, h_dim=8, embed_layers=1, mlp_layers=1)
# synthetic data in 2 batches per epoch keeps an epoch to a few seconds
FAST = dict(batch_size=128, iw_samples=2, kl_anneal_epochs=2, lr_decay_start=1, lr=3e-3)


# ----------------------------------------------------------------------------- optim

def test_adam_first_and_second_step_match_hand_computation():
    params, grads = {"w": np.array([1.0, -2.0])}, {"w": np.array([0.5, -4.0])}
    state = optim.adam_init(params)
    lr, eps, b1, b2 = 0.1, 1e-4, 0.9, 0.999
    p1, s1 = optim.adam_update(params, grads, state, lr, eps)
    # t = 1: m = 0.1 g, v = 0.001 g², step size lr·sqrt(1 − 0.999)/(1 − 0.9)
    m, v = 0.1 * grads["w"], 0.001 * grads["w"] ** 2
    expected = params["w"] - lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(p1["w"], expected, rtol=1e-15)
    assert s1["step"] == 1
    p2, s2 = optim.adam_update(p1, grads, s1, lr, eps)
    m2, v2 = b1 * m + (1 - b1) * grads["w"], b2 * v + (1 - b2) * grads["w"] ** 2
    expected2 = expected - lr * np.sqrt(1 - b2**2) / (1 - b1**2) * m2 / (np.sqrt(v2) + eps)
    np.testing.assert_allclose(p2["w"], expected2, rtol=1e-15)
    assert s2["step"] == 2 and state["step"] == 0, "adam_update must not mutate its input"
    np.testing.assert_array_equal(params["w"], [1.0, -2.0])


def test_weight_decay_without_gradient_shrinks_the_parameters_geometrically():
    """Zero gradients leave Adam's moments at zero, so only the decay acts: theta_t = (1 − lr·λ)^t theta_0."""
    params = {"w": np.array([1.5, -2.0, 0.25]), "b": np.float32(3.0) * np.ones(2, np.float32)}
    state, (lr, decay), p = optim.adam_init(params), (0.1, 0.5), params
    for _ in range(7):
        p, state = optim.adam_update(p, {k: np.zeros_like(v) for k, v in params.items()}, state, lr, weight_decay=decay)
    for name in params:
        np.testing.assert_allclose(p[name], (1 - lr * decay) ** 7 * params[name], rtol=1e-6)
    assert p["b"].dtype == np.float32, "the decay keeps float32 parameters float32"


def test_adam_with_weight_decay_takes_the_steps_of_torch_adamw():
    """With eps = 0 (where Lasagne's placement of eps and PyTorch's coincide) the update is AdamW's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(5)]
    lr, decay = 0.05, 0.3
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    adamw = torch.optim.AdamW(tensors.values(), lr=lr, betas=(0.9, 0.999), eps=0.0, weight_decay=decay)
    p, state = params, optim.adam_init(params)
    for g in grads:
        p, state = optim.adam_update(p, g, state, lr, eps=0.0, weight_decay=decay)
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        adamw.step()
    for k, t in tensors.items():
        np.testing.assert_allclose(p[k], t.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=k)


def test_training_decays_the_parameters_by_lr_times_weight_decay():
    """One batch from the same parameters, with and without decay: the same gradient, so the
    two steps differ by exactly −lr·λ·theta (the decay reaches the engine through the loop)."""
    tc = TrainConfig(batch_size=4, lr=3e-3)
    train = stream_dataset().train
    split = Split(train.u[:4], train.x[:4], train.mask[:4])  # one batch
    init, stepped = ref.init_params(TINY, tc.seed), {}
    for decay in (0.0, 2.0):
        engine = RefEngine(TINY).load(init)
        loop._train_epoch(engine, TrainConfig(**{**tc.to_dict(), "weight_decay": decay}), split, epoch=0)
        stepped[decay] = engine.state()[0]
    for name in init:
        np.testing.assert_allclose(stepped[2.0][name] - stepped[0.0][name], -tc.lr * 2.0 * init[name],
                                   rtol=1e-9, atol=1e-15, err_msg=name)


def test_clipping_rescales_to_max_norm_and_keeps_direction():
    rng = np.random.default_rng(0)
    grads = {"a": 3 * rng.standard_normal((4, 5)), "b": 3 * rng.standard_normal(7)}
    clipped, norm = optim.clip_gradients(grads, max_norm=1.0, clip_value=10.0)
    assert norm == pytest.approx(np.sqrt(sum(np.sum(g**2) for g in grads.values())))
    assert norm > 1.0
    assert optim.global_norm(clipped) == pytest.approx(1.0)
    for k in grads:  # same direction: a positive multiple of the original
        np.testing.assert_allclose(clipped[k], grads[k] / norm, rtol=1e-12)


def test_clipping_leaves_small_gradients_alone_and_bounds_elements():
    grads = {"a": np.array([0.3, -0.4])}
    clipped, _ = optim.clip_gradients(grads, max_norm=1.0, clip_value=10.0)
    np.testing.assert_array_equal(clipped["a"], grads["a"])
    big = {"a": np.array([100.0, -3.0, 0.5])}
    clipped, _ = optim.clip_gradients(big, max_norm=1e6, clip_value=2.0)
    np.testing.assert_array_equal(clipped["a"], [2.0, -2.0, 0.5])
    zero, norm = optim.clip_gradients({"a": np.zeros(3)}, 1.0, 10.0)
    assert norm == 0.0 and np.all(zero["a"] == 0.0)


def test_kl_weight_rises_linearly_from_start_to_one():
    nb = 7
    weights = [optim.kl_weight(e, b, nb, kl_start=0.2, anneal_epochs=3) for e in range(5) for b in range(nb)]
    assert weights[0] == pytest.approx(0.2)
    assert weights[3 * nb] == pytest.approx(1.0) and weights[3 * nb - 1] < 1.0
    assert all(w == 1.0 for w in weights[3 * nb:])
    assert all(b > a for a, b in zip(weights[: 3 * nb], weights[1 : 3 * nb + 1])), "strictly increasing while annealing"
    np.testing.assert_allclose(np.diff(weights[: 3 * nb + 1]), 0.8 / (3 * nb))
    assert optim.kl_weight(0, 0, nb, kl_start=0.2, anneal_epochs=0) == 1.0


def test_learning_rate_is_constant_then_decays_by_factor_each_epoch():
    rates = [optim.learning_rate(e, lr=1e-3, decay_start=20, decay=1.2) for e in range(24)]
    assert rates[:21] == [1e-3] * 21
    np.testing.assert_allclose(rates[21:], [1e-3 / 1.2, 1e-3 / 1.2**2, 1e-3 / 1.2**3])


def test_train_config_round_trips_through_dict():
    tc = TrainConfig(dataset="jsb", variant="srnn2016", epochs=3)
    assert TrainConfig.from_dict(tc.to_dict()) == tc
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({**tc.to_dict(), "momentum": 0.9})


# ------------------------------------------------------------------------ train loop

def _params_equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_resumed_run_reproduces_uninterrupted_run_bitwise(tmp_path):
    tc2 = TrainConfig(epochs=2, **FAST)
    loop.train(tmp_path / "straight", TINY, tc2)
    loop.train(tmp_path / "resumed", TINY, TrainConfig(epochs=1, **FAST))
    loop.train(tmp_path / "resumed", TINY, tc2, resume=True)

    straight, resumed = (checkpoint.load(tmp_path / run / "last.npz") for run in ("straight", "resumed"))
    assert straight.state["epoch"] == resumed.state["epoch"] == 2
    assert _params_equal(straight.params, resumed.params)
    assert _params_equal(straight.state["adam"]["m"], resumed.state["adam"]["m"])
    drop_time = lambda run: [{k: v for k, v in r.items() if k != "seconds"} for r in rundir.read_history(tmp_path / run)]
    assert drop_time("straight") == drop_time("resumed")


def test_training_stops_early_once_patience_is_spent_and_a_stopped_run_resumed_stays_stopped(tmp_path,
                                                                                              scripted_validation):
    # validation peaks at epoch 2: patience 2 stops the run after epoch 4, which is what the full run did up to there
    values = [-5.0, -4.0, -4.5, -4.6, -4.7, -4.8]
    scripted_validation(values)
    loop.train(tmp_path / "full", TINY, TrainConfig(epochs=6, valid_every=1, **FAST))
    made = scripted_validation(values)
    tc = TrainConfig(epochs=6, valid_every=1, patience=2, **FAST)
    loop.train(tmp_path / "stopped", TINY, tc)
    drop_time = lambda run: [{k: v for k, v in r.items() if k != "seconds"} for r in rundir.read_history(tmp_path / run)]
    assert len(made) == 4 and drop_time("stopped") == drop_time("full")[:4]
    assert loop.patience_spent(rundir.read_history(tmp_path / "stopped"), 2)
    assert not loop.patience_spent(rundir.read_history(tmp_path / "full")[:3], 2)
    full, stopped = (checkpoint.load(tmp_path / run / "best.npz") for run in ("full", "stopped"))
    assert full.state == stopped.state == {"epoch": 2} and _params_equal(full.params, stopped.params)
    # resumed, it trains no further epoch; with patience 0 (a resumable change) it goes on to the last
    loop.train(tmp_path / "stopped", TINY, tc, resume=True)
    assert len(rundir.read_history(tmp_path / "stopped")) == 4 and len(made) == 4
    loop.train(tmp_path / "stopped", TINY, TrainConfig(epochs=6, valid_every=1, **FAST), resume=True)
    assert drop_time("stopped") == drop_time("full")


def test_patience_counts_from_the_first_of_equal_best_validations():
    history = [{"epoch": e, "valid": None if e % 2 else {"sequence_averaged": v}} for e, v in
               zip(range(1, 9), [0, -1.0, 0, -2.0, 0, -1.0, 0, -3.0])]
    # the best (epoch 2) and an equal one later (epoch 6): the first counts, as best.npz keeps it
    assert loop.patience_spent(history[:6], 4) and not loop.patience_spent(history[:5], 4)
    assert not loop.patience_spent(history, 0) and not loop.patience_spent(history[:1], 1)


def test_run_directory_holds_every_artifact(tmp_path, stream_data):
    metrics = loop.train(tmp_path, TINY, TrainConfig(epochs=1, batch_size=4, iw_samples=2, lr=3e-3))
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"config.json", "metrics.jsonl", "best.npz", "last.npz", "learning_curve.png", "test_metrics.json"}
    saved = json.loads((tmp_path / "config.json").read_text())
    assert ref.Config.from_dict(saved["model"]) == TINY and saved["train"]["lr"] == 3e-3
    (record,) = rundir.read_history(tmp_path)
    assert set(record) == {"epoch", "train_elbo", "valid", "kl_weight", "lr", "seconds"}
    assert record["epoch"] == 1 and record["lr"] == 3e-3 and 0.2 <= record["kl_weight"] < 1
    assert json.loads((tmp_path / "test_metrics.json").read_text()) == metrics
    assert metrics["iw"]["K"] == 2 and "teacher_iw" not in metrics  # only the synthetic data has a teacher
    assert checkpoint.load(tmp_path / "best.npz").state == {"epoch": 1}
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_existing_run_is_not_overwritten_and_resume_checks_settings(tmp_path, stream_data):
    tc = TrainConfig(epochs=1, batch_size=4, iw_samples=1)
    loop.train(tmp_path, TINY, tc)
    with pytest.raises(ConfigError, match="--resume"):
        loop.train(tmp_path, TINY, tc)
    with pytest.raises(ConfigError, match="d_dim"):
        loop.train(tmp_path, ref.Config(**{**TINY.to_dict(), "d_dim": 5}), tc, resume=True)
    with pytest.raises(ConfigError, match="lr"):
        loop.train(tmp_path, TINY, TrainConfig(epochs=1, batch_size=4, iw_samples=1, lr=1e-2), resume=True)
    with pytest.raises(DataError, match="nothing to resume"):
        loop.train(tmp_path / "empty", TINY, tc, resume=True)


@pytest.fixture
def stream_data(monkeypatch):
    dataset = stream_dataset()
    monkeypatch.setattr(loop, "load_dataset", lambda name, variant, data_dir: dataset)
    return dataset


def test_stream_layout_carries_states_across_batches(tmp_path, stream_data, monkeypatch):
    calls = []
    elbo_and_states = srnn.engine.elbo_and_states

    def spy(params, u, x, mask, eps, config, kl_weight=1.0, d_0=None, z_0=None, backend="numpy"):
        L, d_last, z_last = elbo_and_states(params, u, x, mask, eps, config, kl_weight, d_0, z_0, backend)
        calls.append((d_0, z_0, srnn.engine.getval(d_last), srnn.engine.getval(z_last)))
        return L, d_last, z_last

    monkeypatch.setattr(srnn.engine, "elbo_and_states", spy)
    loop.train(tmp_path, TINY, TrainConfig(epochs=1, batch_size=4, iw_samples=1))
    # 3 training batches, then 2 validation batches, then the 5 test pieces, each run alone and never carried
    assert len(calls) == 3 + 2 + 5
    for first, rest in ((0, (1, 2)), (3, (4,))):
        assert calls[first][0] is None and calls[first][1] is None, "each pass starts from zero states"
        for i in rest:
            np.testing.assert_array_equal(calls[i][0], calls[i - 1][2])
            np.testing.assert_array_equal(calls[i][1], calls[i - 1][3])
    assert all(d_0 is None and z_0 is None for d_0, z_0, _, _ in calls[5:])


def test_streams_train_layout_trains_as_on_the_same_pieces_stored_as_streams(tmp_path, monkeypatch):
    pieces = stream_dataset().test  # 5 whole pieces of 10 steps: 4 streams of one chunk (12 or 13 steps)
    as_pieces = Dataset("pieces", "boulanger2012", pieces, pieces, pieces)
    cut = Dataset("pieces", "boulanger2012", as_streams(pieces, 4), pieces, pieces)
    tc = TrainConfig(epochs=2, batch_size=4, iw_samples=1)
    for name, dataset, layout in (("stored", cut, "as_stored"), ("cut", as_pieces, "streams")):
        monkeypatch.setattr(loop, "load_dataset", lambda *_, dataset=dataset: dataset)
        loop.train(tmp_path / name, TINY, TrainConfig(**{**tc.to_dict(), "train_layout": layout}))
    assert _params_equal(checkpoint.load(tmp_path / "stored" / "last.npz").params,
                         checkpoint.load(tmp_path / "cut" / "last.npz").params)
    logged = [[{k: v for k, v in r.items() if k != "seconds"} for r in rundir.read_history(tmp_path / name)]
              for name in ("stored", "cut")]
    assert logged[0] == logged[1]


def test_stream_layout_requires_its_batch_size(tmp_path, stream_data):
    with pytest.raises(ConfigError, match="batch size 4"):
        loop.train(tmp_path, TINY, TrainConfig(epochs=1, batch_size=16))
    assert not tmp_path.exists() or not any(tmp_path.iterdir()), "nothing written before the check"


def test_training_is_deterministic_given_seed(tmp_path, stream_data):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        loop.train(tmp_path / name, TINY, TrainConfig(epochs=2, batch_size=4, iw_samples=1, seed=seed))
        runs[name] = checkpoint.load(tmp_path / name / "last.npz").params
    assert _params_equal(runs["a"], runs["b"])
    assert not _params_equal(runs["a"], runs["c"])


def test_float32_training_keeps_float32_parameters(tmp_path, stream_data):
    loop.train(tmp_path, TINY, TrainConfig(epochs=1, batch_size=4, iw_samples=1, dtype="float32"))
    params = checkpoint.load(tmp_path / "last.npz").params
    assert {v.dtype for v in params.values()} == {np.dtype("float32")}


# ------------------------------------------------------------------------ evaluation

def test_summarize_matches_hand_computed_metrics():
    L, T = np.array([-10.0, -30.0, -8.0]), np.array([2, 10, 4])
    m = evaluation.summarize(L, T)
    per_step = L / T
    assert m["sequence_averaged"] == pytest.approx(per_step.mean())
    assert m["sequence_averaged_se"] == pytest.approx(per_step.std(ddof=1) / math.sqrt(3))
    assert m["frame_weighted"] == pytest.approx(-48 / 16)
    r = -48 / 16
    assert m["frame_weighted_se"] == pytest.approx(math.sqrt(np.sum((L - r * T) ** 2) / 6) / T.mean())
    single = evaluation.summarize([-5.0], [5])
    assert single["sequence_averaged"] == -1.0 and single["sequence_averaged_se"] is None


def test_evaluate_reports_both_metrics_for_elbo_and_iw_bound():
    dataset = stream_dataset()
    engine = RefEngine(TINY).load(ref.init_params(TINY, 0))
    m = evaluation.evaluate(engine, dataset.test, iw_samples=20, seed=1)
    assert m["num_sequences"] == 5 and m["num_frames"] == 50
    for key in ("elbo", "iw"):
        assert set(m[key]) >= {"sequence_averaged", "frame_weighted", "sequence_averaged_se", "frame_weighted_se"}
    # the K-path bound is at least the ELBO's level up to Monte Carlo noise
    assert m["iw"]["frame_weighted"] > m["elbo"]["frame_weighted"] - 0.05
    assert evaluation.evaluate(engine, dataset.test, 20, seed=1) == m, "a fixed seed gives the same numbers"
    assert "iw" not in evaluation.evaluate(engine, dataset.test, 0, seed=1)


def test_elbo_over_paths_is_the_mean_of_one_path_evaluations_and_its_noise_shrinks_with_paths():
    dataset = stream_dataset()
    engine = RefEngine(TINY).load(perturbed_params(TINY, seed=3))
    m = evaluation.elbo_over_paths(engine, dataset.test, paths=8, seed=5)
    one_path = [evaluation.evaluate(engine, dataset.test, 0, seed=[5, p])["elbo"] for p in range(8)]
    for key in ("sequence_averaged", "frame_weighted"):  # both metrics are linear in the L_i
        values = [e[key] for e in one_path]
        assert m[key] == pytest.approx(np.mean(values), rel=1e-12)
        assert m[key + "_path_se"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(8), rel=1e-12)
        assert 0 < m[key + "_path_se"] < np.std(values, ddof=1)
    assert m["sequence_averaged_se"] is not None and m["paths"] == 8


@pytest.mark.parametrize("model", ["srnn", "vrnn", "rnn"])
def test_elbo_of_whole_pieces_run_one_by_one_is_the_elbo_of_the_padded_batch(model):
    config = ref.Config(**{**CONFIGS["paper-options"].to_dict(), "model": model})
    lengths = np.array([9, 3, 7, 1, 5])  # padded to 9: trimming each piece must change nothing
    u, x, mask, _ = random_batch(config, 5, 9, np.random.default_rng(0),
                                 mask=(np.arange(9) < lengths[:, None]).astype(float))
    engine = RefEngine(config).load(perturbed_params(config, 0))
    L, _ = evaluation.per_sequence_bounds(engine, Split(u, x, mask), 0, seed=1)
    eps = np.random.default_rng(1).standard_normal((5, 9, config.z_dim))  # the one batch's noise
    np.testing.assert_allclose(L, engine.elbo_and_states(Batch(u, x, mask), eps, None, None)[0], rtol=1e-12)


@pytest.mark.parametrize("memory", [evaluation.EVAL_MEMORY, 1], ids=["all-paths-per-call", "one-path-per-call"])
@pytest.mark.parametrize("carried", [False, True], ids=["zero-states", "carried-states"])
def test_iw_bound_run_by_sequence_and_path_group_is_the_bound_of_the_whole_batch(monkeypatch, memory, carried):
    config, K, rng = CONFIGS["paper-options"], 12, np.random.default_rng(0)
    lengths = np.array([9, 3, 7, 1, 5])  # padded to 9: trimming each sequence must change nothing
    u, x, mask, _ = random_batch(config, 5, 9, rng, mask=(np.arange(9) < lengths[:, None]).astype(float))
    batch = Batch(u, x, mask)
    d_0, z_0 = (rng.standard_normal((5, config.d_dim)), rng.standard_normal((5, config.z_dim))) if carried else (None, None)
    engine = RefEngine(config).load(perturbed_params(config, 0))
    eps = np.random.default_rng(1).standard_normal((K, 5, 9, config.z_dim))  # all paths at once
    whole = logsumexp(engine.log_importance_weights(batch, eps, d_0, z_0), axis=0) - np.log(K)
    monkeypatch.setattr(evaluation, "EVAL_MEMORY", memory)
    np.testing.assert_allclose(evaluation._iw_bound(engine, batch, K, np.random.default_rng(1), d_0, z_0), whole, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(not (DATA_DIR / "boulanger2012").is_dir(), reason=f"no data at {DATA_DIR}")
def test_short_training_on_jsb_improves_validation_elbo(tmp_path):
    tc = TrainConfig(dataset="jsb", epochs=1, batch_size=64, lr=1e-2, iw_samples=1)
    dataset = data.load_dataset("jsb", "boulanger2012", DATA_DIR)
    before = evaluation.evaluate(RefEngine(TINY).load(ref.init_params(TINY, tc.seed)), dataset.valid, 0, tc.seed)["elbo"]
    loop.train(tmp_path, TINY, tc, data_dir=DATA_DIR)
    (record,) = rundir.read_history(tmp_path)
    assert record["valid"]["sequence_averaged"] > before["sequence_averaged"] + 1.0, (before, record["valid"])


def test_numba_and_numpy_backends_train_the_same_model(tmp_path, stream_data):
    """The backend is a speed switch: one epoch of training lands on the same parameters."""
    runs = {}
    for backend in ("numba", "numpy"):
        loop.train(tmp_path / backend, TINY, TrainConfig(epochs=1, batch_size=4, iw_samples=1, backend=backend))
        runs[backend] = checkpoint.load(tmp_path / backend / "last.npz").params
    assert TrainConfig().backend == "numba"
    for k in runs["numpy"]:
        np.testing.assert_allclose(runs["numba"][k], runs["numpy"][k], rtol=1e-9, atol=1e-12, err_msg=k)
    # a run may resume on the other backend
    loop.train(tmp_path / "numba", TINY, TrainConfig(epochs=2, batch_size=4, iw_samples=1, backend="numpy"), resume=True)


def test_engines_meet_the_engine_protocol_and_the_registry_names_them():
    from srnn.engine import ENGINES, Engine, EngineOptions, make_engine

    engine = make_engine("ref", TINY, "float64", EngineOptions(backend="numpy"))
    assert isinstance(engine, RefEngine) and isinstance(engine, Engine)
    assert engine.describe() == {"impl": "ref", "backend": "numpy", "dtype": "float64"}
    assert set(ENGINES) == {"ref", "torch"}
    with pytest.raises(ConfigError, match="unknown implementation 'jax'"):
        make_engine("jax", TINY, "float64")
