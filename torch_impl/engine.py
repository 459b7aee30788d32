"""torch_impl's engine: a model's module (`model_for(config)`: the SRNN, the VRNN or the RNN) and Adam's
state on a CPU, a GPU or several processes, for the project's one training loop (srnn.loop, which
drives it through the `Engine` protocol of srnn.engine; torch_impl itself imports nothing of the
application).

The loop keeps the data order, the noise (drawn with NumPy, so a seed gives the same run on
either implementation), the schedules and the run directory; the engine holds the module
and Adam's state on its device and takes the optimizer steps, with the same Adam and
clipping code as ref (ref/optim.py works on tensors as well as on arrays).

Data-parallel training: started by `torchrun --nproc-per-node N srnn train --impl torch ...`,
every process builds the same model and draws the same batches and noise, runs its
share of each batch's rows through DistributedDataParallel (gloo on the CPU, nccl on
GPUs) and keeps the truncated-BPTT states of its own rows. Its loss is scaled so that
the averaged gradient is that of −ΣL_i/ΣT_i over the whole batch: the steps are the
single-process steps, up to the order of floating-point sums. Rank 0 alone validates,
writes files and prints.
"""
import atexit
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ref.errors import ConfigError
from ref.optim import adam_init, adam_update, clip_gradients

from . import model_for
from .model import contract_name


class TorchEngine:
    """torch_impl's engine for srnn.loop: the module of `config.model` and Adam's state on `device`.

    config: the model's Config; dtype: "float64" or "float32" (parameters and arithmetic);
    device: "cpu", "cuda", "cuda:1", ... (default: cuda when available, else cpu);
    bf16: run the forward pass under bfloat16 autocast (float32 parameters; for GPUs);
    data_parallel: join the torchrun process group (default: when WORLD_SIZE > 1).
    """

    def __init__(self, config, dtype="float64", device=None, bf16=False, data_parallel=None):
        self.config, self.dtype, self.bf16 = config, dtype, bf16
        if bf16 and dtype != "float32":
            raise ConfigError("bf16 autocast needs float32 parameters (--dtype float32)")
        data_parallel = int(os.environ.get("WORLD_SIZE", "1")) > 1 if data_parallel is None else data_parallel
        self.device = _device(device, data_parallel)
        self.rank, self.world = _join_process_group(self.device) if data_parallel else (0, 1)
        self.is_main = self.rank == 0
        self.model = model_for(config).to(self.device, getattr(torch, dtype))
        self.named = {contract_name(key): p for key, p in self.model.named_parameters()}
        # DistributedDataParallel averages the gradients of the processes during backward()
        self.step_model = (DistributedDataParallel(self.model, device_ids=None if self.device.type == "cpu"
                                                   else [self.device]) if self.world > 1 else self.model)
        self.adam = None

    def describe(self):
        """What ran, for config.json."""
        return {"impl": "torch", "torch": torch.__version__, "device": str(self.device),
                "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                "dtype": self.dtype, "bf16": self.bf16, "processes": self.world}

    def for_model(self, config, params):
        """An engine with the same settings holding another model (params), in this process only."""
        return TorchEngine(config, self.dtype, self.device, self.bf16, data_parallel=False).load(params)

    def load(self, params, adam=None):
        """Parameters (and Adam's state) from NumPy dicts under the contract's names."""
        self.model.load_params(params)
        adam = adam if adam is not None else adam_init(params)
        self.adam = {"step": adam["step"], **{k: {name: self._tensor(v) for name, v in adam[k].items()}
                                              for k in ("m", "v")}}
        return self

    def state(self):
        """(params, adam) as NumPy dicts, what checkpoints hold."""
        adam = {"step": self.adam["step"],
                **{k: {name: v.cpu().numpy() for name, v in self.adam[k].items()} for k in ("m", "v")}}
        return self.model.export_params(), adam

    def train_batch(self, batch, eps, kl_weight, lr, d_0, z_0, *, adam_eps, max_grad_norm, clip_value, weight_decay):
        """One optimizer step on this process's rows of the batch; returns ΣL_i of the whole
        batch and this process's states at each T_i (carried to the next batch)."""
        rows, weight = self._rows(len(batch.mask))
        u, x, mask, eps = (self._tensor(v[rows]) for v in (batch.u, batch.x, batch.mask, eps))
        with self._autocast():
            L, d_last, z_last = self.step_model(u, x, mask, eps, kl_weight, d_0, z_0)
        # DDP averages over the processes: scaled so that the mean is the gradient of −ΣL/ΣT of the whole batch
        loss = -L.sum() * (weight * self.world / float(np.sum(batch.mask)))
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        grads, _ = clip_gradients({name: p.grad for name, p in self.named.items()}, max_grad_norm, clip_value)
        with torch.no_grad():
            params = {name: p.detach() for name, p in self.named.items()}
            new_params, self.adam = adam_update(params, grads, self.adam, lr, adam_eps, weight_decay=weight_decay)
            for name, p in self.named.items():
                p.copy_(new_params[name])
        sum_L = L.detach().sum() * weight
        if self.world > 1:
            dist.all_reduce(sum_L)
        return float(sum_L), d_last.detach(), z_last.detach()

    def any_process(self, flag):
        if self.world == 1:
            return flag
        flag = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @torch.no_grad()
    def elbo_and_states(self, batch, eps, d_0, z_0):
        with self._autocast():
            L, d_last, z_last = self.model.elbo_and_states(batch.u, batch.x, batch.mask, eps, 1.0, d_0, z_0)
        return L.double().cpu().numpy(), d_last, z_last

    @torch.no_grad()
    def log_importance_weights(self, batch, eps, d_0, z_0):
        with self._autocast():
            log_w = self.model.log_importance_weights(batch.u, batch.x, batch.mask, self._tensor(eps), d_0, z_0)
        return log_w.double().cpu().numpy()

    def sample(self, eps_z, noise_x):
        return self.model.sample(eps_z, noise_x).cpu().numpy()

    def _tensor(self, v):
        return torch.as_tensor(v).to(device=self.device, dtype=getattr(torch, self.dtype))

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _rows(self, B):
        """This process's rows of a batch of B, and their weight (0 for a stand-in row when
        B is smaller than the number of processes: every process must take part in each step)."""
        rows = np.array_split(np.arange(B), self.world)[self.rank]
        return (rows, 1.0) if len(rows) else (np.arange(1), 0.0)


def _device(device, data_parallel):
    """The torch.device to run on: as asked, else cuda (this process's GPU under torchrun) when there is one."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, but PyTorch sees no CUDA GPU here (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) if data_parallel else 0)
    elif device.type != "cpu":
        raise ConfigError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N")
    return device


def _join_process_group(device):
    """(rank, world size) of this torchrun process, the process group joined once: nccl for GPUs, gloo on CPUs."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return dist.get_rank(), dist.get_world_size()
