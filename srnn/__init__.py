"""srnn's application layer: everything around the model core that trains, scores and
reproduces it, for every implementation alike.

Layers import downward only (tests/test_layers.py holds the rule): `ref` is the model core
and imports nothing else of the project; `torch_impl` is the same model in PyTorch and
imports only `ref`; `srnn` may import both.

    config      TrainConfig: how a model is trained and evaluated
    splits      masked batch-first splits, minibatches, the truncated-BPTT stream layout
    data        the music benchmarks' files: download, sha256 check, validation, load_dataset
    synthetic   the built-in dataset sampled from a known teacher SRNN
    checkpoint  .npz checkpoints under the contract's parameter names, atomic writes
    engine      the Engine protocol, RefEngine, and the registry ENGINES of implementations
    loop        the training loop and resumption
    evaluation  ELBO and IW bound of a split, both per-step metrics with standard errors
    rundir      the files of a run directory
    music       pieces sampled by an engine, piano-roll PNG and MIDI files
    reproduce   the named runs of the results table and their result files
    provenance  commit and machine, for result files and benchmarks
    cli         the `srnn` command
"""
