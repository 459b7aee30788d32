"""The models of docs/model.md in PyTorch: what they share (`SequenceModel`), and the SRNN of §4: the
generative model (eq. 1–2), the inference network (eq. 3, 5), the ELBO (eq. 4, 6, 7), the
importance-weighted bound and ancestral sampling. The RNN (§7) and the VRNN (§8) are in rnn.py and vrnn.py.

They compute exactly what `ref/` computes (tests/test_torch.py checks the ELBO and every
gradient against it); the SRNN differs only in how the work is laid out, for speed:
- the two GRUs are `torch.nn.GRU` (cuDNN on a GPU); the backward GRU of the inference
  network runs forwards over each sequence's valid prefix reversed in place, so every
  sequence starts from its own last valid step T_i with a_{T_i+1} = 0;
- everything that does not recur (feature extractor, input projections, emission) acts
  on all steps at once;
- the first layer of each prior / posterior MLP is split into its d_t or a_t part,
  computed for all steps before the loop over time, and its z_{t−1} part, the only
  product left inside the loop; there the four MLPs (prior mean and log-variance,
  posterior mean and log-variance) run as one matrix product and batched products.
torch.compile of one step of that loop was tried and left out: on 2 CPU cores, paper size,
float32, it saved 8% of a forward + backward pass (0.82 s against 0.89 s) for 45 s of
compilation per process, and it recompiles for every new batch shape.

Modules are named so that a state-dict key maps to the contract's parameter name (docs/model.md §4.6) by renaming
its last part (`prior_mu.0.weight` → `prior_mu.0.W`, `gru_d.weight_ih_l0` → `gru_d.W_ih`, `gru_h.weight_ih` →
`gru_h.W_ih`). Public tensors are batch-first as the contract fixes (docs/model.md §2); the loops over time are
time-major.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ref.checks import (check_batch_shapes, check_config, check_finite, check_kl_weight, check_param_values,
                        check_params, check_paths_shape, check_sample_shapes, check_state_shape, raise_first_failure,
                        value_checks)
from ref.config import Config
from ref.errors import ConfigError
from ref.params import Z_MLPS, a_width, init_params

# state-dict attribute name -> the contract's suffix (nn.Linear; nn.GRU's one layer; nn.GRUCell)
_CONTRACT_SUFFIX = {"weight": "W", "bias": "b",
                    "weight_ih_l0": "W_ih", "weight_hh_l0": "W_hh", "bias_ih_l0": "b_ih", "bias_hh_l0": "b_hh",
                    "weight_ih": "W_ih", "weight_hh": "W_hh", "bias_ih": "b_ih", "bias_hh": "b_hh"}


def clipped_leaky_relu(v, clip):
    """f(v) = clip(max(v, v/3), −clip, clip) with ref's slopes: 1/3 at the kink v = 0, 0 where clipped
    (leaky_relu's and hardtanh's own backward rules; on the CPU far cheaper than torch.where and clamp)."""
    return F.hardtanh(F.leaky_relu(v, 1.0 / 3.0), -clip, clip)


def variance_head(raw, var_floor):
    """logvar = log(exp(raw) + var_floor), as a log-sum-exp so that it never overflows."""
    return torch.logaddexp(raw, raw.new_tensor(math.log(var_floor))) if var_floor > 0 else raw


def bernoulli_log_prob(x, logits):
    """log Bern(x | σ(l)) summed over the last axis, from logits."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_log_prob(x, mu, logvar):
    """log N(x | mu, exp(logvar)) summed over the last axis, with its −½ log 2π per dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, exp(logvar_q)) ‖ N(mu_p, exp(logvar_p))) summed over the last axis (as ref.distributions)."""
    return 0.5 * (logvar_p - logvar_q + torch.exp(logvar_q - logvar_p)
                  + (mu_q - mu_p) ** 2 * torch.exp(-logvar_p) - 1.0).sum(-1)


def dense_stack(n_in, width, num_layers):
    """Layers "0" … "k−1" of a hidden stack (Linear, W of shape (out, in) as the contract's)."""
    layers = {}
    for k in range(num_layers):
        layers[str(k)], n_in = nn.Linear(n_in, width), width
    return layers, n_in


def split_first_layers(mlps, n_left, num_layers):
    """The first layers of MLPs that act on one concatenation [v, w], v of width n_left, split for a
    loop over time that computes one of the two parts for all steps first.

    Returns (W_v, W_w, b): the parts acting on v and on w, and the biases, each concatenated
    over the MLPs (rows of MLP i together); with num_layers = 0 the first layer is `out`.
    """
    first = [m["0" if num_layers else "out"] for m in mlps]
    W_v = torch.cat([layer.weight[:, :n_left] for layer in first])
    W_w = torch.cat([layer.weight[:, n_left:] for layer in first])
    return W_v, W_w, torch.cat([layer.bias for layer in first])


def stacked_later_layers(mlps, num_layers):
    """The layers of MLPs of one shape after their first (hidden 1 … k−1, then out), as
    [(W (m, in, out), b (m, 1, out))] for batched products; empty when num_layers = 0."""
    rest = [str(k) for k in range(1, num_layers)] + (["out"] if num_layers else [])
    return [(torch.stack([m[k].weight.T for m in mlps]), torch.stack([m[k].bias[None] for m in mlps])) for k in rest]


def run_later_layers(pre, num_mlps, stacked, clip):
    """m MLPs from their first layers' outputs side by side, pre (B, m·width), through their
    `stacked_later_layers`. Returns (m, B, out)."""
    out = pre.view(pre.shape[0], num_mlps, -1).transpose(0, 1)  # (m, B, width)
    for W, b in stacked:
        out = torch.baddbmm(b, clipped_leaky_relu(out, clip), W)
    return out


def at_last_steps(v, lengths):
    """v_{T_i} of each row: (B, T, ·) -> (B, ·)."""
    return v[torch.arange(len(lengths), device=v.device), lengths - 1]


def tile_paths(v, K):
    """(B, ...) -> (K·B, ...), path k in rows kB … kB+B−1 (as ref lays out the IW bound's paths)."""
    return v.repeat(K, *([1] * (v.dim() - 1)))


class SequenceModel(nn.Module):
    """What every model of docs/model.md shares as an nn.Module, initialised as `ref.init_params(config, seed)`
    (in torch's default dtype: for the exact float64 values, `.double().load_params(init_params(...))`).

    config: a `ref.Config` of this class's `config.model`. Move it with `.to(device, dtype)` like any module.
    Entry points (docs/model.md §6): `elbo`, `elbo_and_states` (truncated BPTT), `log_importance_weights`,
    `iw_bound`, `sample`; `load_params` / `export_params` under the contract's names (docs/model.md §4.6).
    A model adds its modules after `embed` in `_add_modules`, in `ref.param_shapes` order, and defines
    `_elbo_terms`, `_log_weights` and `_sample_step`.
    """

    MODEL = None  # the config.model this class computes

    def __init__(self, config: Config, seed: int = 0):
        check_config(config)
        if config.model != self.MODEL:
            raise ConfigError(f"{type(self).__name__} computes model {self.MODEL!r}, the config asks for "
                              f"{config.model!r} (torch_impl.model_for(config) builds the right one)")
        super().__init__()
        c = self.config = config
        self.embed = nn.ModuleDict(dense_stack(c.x_dim, c.h_dim, c.embed_layers)[0])
        self._add_modules()
        self.load_params(init_params(config, seed))

    def _mlp(self, n_in, heads):
        layers, n_hidden = dense_stack(n_in, self.config.h_dim, self.config.mlp_layers)
        return nn.ModuleDict({**layers, **{name: nn.Linear(n_hidden, n_out) for name, n_out in heads.items()}})

    def _emission_mlp(self, n_in):
        """The `emit` MLP on n_in inputs: its `out` head (Bernoulli), or `mu` and `logvar` (Gaussian)."""
        c = self.config
        return self._mlp(n_in, {"out": c.x_dim} if c.emission == "bernoulli" else {"mu": c.x_dim, "logvar": c.x_dim})

    # -----------------------------------------------------------------------------------
    # Parameters under the contract's names (docs/model.md §4.6)
    # -----------------------------------------------------------------------------------

    def export_params(self) -> dict:
        """Every parameter under its contract name, as float NumPy arrays on the CPU."""
        return {contract_name(key): value.detach().cpu().numpy().copy() for key, value in self.named_parameters()}

    def load_params(self, mapping) -> "SequenceModel":
        """Copy parameters (NumPy arrays or tensors under the contract's names) into the module,
        in its own dtype and device; names and shapes must be exactly this config's."""
        check_params(mapping, self.config)
        mapping = {name: value if torch.is_tensor(value) else np.asarray(value) for name, value in mapping.items()}
        check_param_values(mapping)
        own = {contract_name(key): p for key, p in self.named_parameters()}
        with torch.no_grad():
            for name, value in mapping.items():
                own[name].copy_(torch.as_tensor(value).to(dtype=own[name].dtype, device=own[name].device))
        return self

    # -----------------------------------------------------------------------------------
    # Building blocks (docs/model.md §3)
    # -----------------------------------------------------------------------------------

    def _hidden_stack(self, layers, v, num_layers):
        """Hidden layers "0" … "k−1" of `layers`, each f(W v + b); the identity when k = 0."""
        for k in range(num_layers):
            v = clipped_leaky_relu(layers[str(k)](v), self.config.clip)
        return v

    def _mlp_forward(self, layers, v):
        return layers["out"](self._hidden_stack(layers, v, self.config.mlp_layers))

    def feature_extractor(self, v):
        """e(v): the `embed` hidden stack shared by u_t and x_t. (..., x_dim) -> (..., e_dim)"""
        return self._hidden_stack(self.embed, v, self.config.embed_layers)

    def deterministic_layer(self, e_u, d_0):
        """Deterministic states d_t = GRU_d(d_{t−1}, e(u_t)) — eq. (2), the RNN's eq. (R1) (the models with `gru_d`).

        e_u: (B, T, e_dim); d_0: (B, d_dim). Returns d: (B, T, d_dim).
        """
        return self.gru_d(e_u, d_0[None].contiguous())[0]

    def emission(self, v):
        """The emission head on what the model's emission conditions on, v (docs/model.md §3):
        logits (Bernoulli) or (mu, logvar) (Gaussian)."""
        h = self._hidden_stack(self.emit, v, self.config.mlp_layers)
        if self.config.emission == "bernoulli":
            return self.emit["out"](h)
        return self.emit["mu"](h), variance_head(self.emit["logvar"](h), self.config.var_floor)

    def emission_log_prob(self, x, v):
        """log p(x_t | v_t) of the emission on v for every step at once. (..., x_dim) -> (...)"""
        if self.config.emission == "bernoulli":
            return bernoulli_log_prob(x, self.emission(v))
        return gaussian_log_prob(x, *self.emission(v))

    # -----------------------------------------------------------------------------------
    # Bounds
    # -----------------------------------------------------------------------------------

    def forward(self, u, x, mask, eps, kl_weight=1.0, d_0=None, z_0=None):
        """`elbo_and_states`: the call DistributedDataParallel wraps."""
        return self.elbo_and_states(u, x, mask, eps, kl_weight, d_0, z_0)

    def elbo(self, u, x, mask, eps, kl_weight=1.0):
        """Per-sequence ELBO L_i = Σ_{t ≤ T_i} [log p(x_t | ·) − β KL_t] — eq. (4), (6); §7.3, §8.4.

        u, x: (B, T, x_dim); mask: (B, T); eps: (B, T, z_dim); tensors of the module's
        device and dtype. Returns L: (B,).
        """
        return self.elbo_and_states(u, x, mask, eps, kl_weight)[0]

    def elbo_and_states(self, u, x, mask, eps, kl_weight=1.0, d_0=None, z_0=None):
        """The ELBO from initial states (d_0, z_0) (zeros by default), and the states at each
        T_i, the next chunk's (d_0, z_0) in truncated BPTT. Returns L (B,), d_last, z_last."""
        check_kl_weight(kl_weight)
        u, x, mask, eps, d_0, z_0, lengths = self._inputs(u, x, mask, eps, d_0, z_0)
        log_px, kl, d_last, z_last = self._elbo_terms(u, x, eps, lengths, d_0, z_0)
        return (mask * (log_px - kl_weight * kl)).sum(1), d_last, z_last  # eq. (6)

    def log_importance_weights(self, u, x, mask, eps, d_0=None, z_0=None):
        """log w_k = Σ_{t ≤ T_i} [log p(x_t | z_t^k, ·) + log p(z_t^k | ·) − log q(z_t^k | ·)] (docs/model.md §2).

        eps: (K, B, T, z_dim), one noise sequence per path. Returns (K, B).
        """
        eps = self._tensor(eps)
        check_paths_shape(tuple(eps.shape))
        u, x, mask, _, d_0, z_0, lengths = self._inputs(u, x, mask, eps[0], d_0, z_0)
        check_finite("eps", eps)
        return (mask * self._log_weights(u, x, eps * mask[..., None], lengths, d_0, z_0)).sum(-1)

    def iw_bound(self, u, x, mask, eps, d_0=None, z_0=None):
        """Importance-weighted bound log (1/K) Σ_k w_k per sequence, K = eps.shape[0]. Returns (B,)."""
        log_w = self.log_importance_weights(u, x, mask, eps, d_0, z_0)
        return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])

    def _elbo_terms(self, u, x, eps, lengths, d_0, z_0):
        """The per-step terms of the ELBO on one sampled path, and the states at each T_i.

        Inputs as `_inputs` returns them. Returns log p(x_t | ·) (B, T), KL_t (B, T), d_last, z_last.
        """
        raise NotImplementedError

    def _log_weights(self, u, x, eps, lengths, d_0, z_0):
        """The per-step terms of each path's log weight, (K, B, T); eps: (K, B, T, z_dim), padded steps zero."""
        raise NotImplementedError

    # -----------------------------------------------------------------------------------
    # Ancestral sampling
    # -----------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, eps_z, noise_x, u_1=None, return_states=False):
        """Draw x_{1:T} from the generative model, feeding each x_t back as u_{t+1} (as ref.sample).

        eps_z: (B, T, z_dim) standard normal; noise_x: (B, T, x_dim), uniform (Bernoulli)
        or standard normal (Gaussian), from `ref.draw_sample_noise`; u_1: (B, x_dim), zeros
        by default. Returns x (B, T, x_dim), with return_states also d and z (the VRNN's h as d,
        the RNN's z zeros).
        """
        c = self.config
        eps_z, noise_x = (self._tensor(v) for v in (eps_z, noise_x))
        u_1 = None if u_1 is None else self._tensor(u_1)
        check_sample_shapes(tuple(eps_z.shape), tuple(noise_x.shape), None if u_1 is None else tuple(u_1.shape), c)
        B, T = eps_z.shape[:2]
        u_t = eps_z.new_zeros(B, c.x_dim) if u_1 is None else u_1
        d_t, z_t = eps_z.new_zeros(B, c.d_dim), eps_z.new_zeros(B, c.z_dim)
        x, d, z = [], [], []
        for t in range(T):
            d_t, z_t, out = self._sample_step(u_t, d_t, z_t, eps_z[:, t])
            if c.emission == "bernoulli":
                x_t = (noise_x[:, t] < torch.sigmoid(out)).to(eps_z.dtype)
            else:
                x_t = out[0] + torch.exp(0.5 * out[1]) * noise_x[:, t]
            x.append(x_t), d.append(d_t), z.append(z_t)
            u_t = x_t
        x, d, z = (torch.stack(v, 1) for v in (x, d, z))
        return (x, d, z) if return_states else x

    def _sample_step(self, u_t, d_tm1, z_tm1, eps_z_t):
        """(d_t, z_t, the emission's output) of one step of the generative model."""
        raise NotImplementedError

    # -----------------------------------------------------------------------------------
    # Input checks: the problems ref names, named the same way
    # -----------------------------------------------------------------------------------

    def _tensor(self, v):
        """v as a tensor of the module's dtype and device."""
        p = next(self.parameters())
        return torch.as_tensor(v).to(dtype=p.dtype, device=p.device)

    def _inputs(self, u, x, mask, eps, d_0, z_0):
        """Check shapes and values (ref.checks, one device sync), zero the padded steps.

        Returns u, x, mask, eps, d_0, z_0 as tensors of the module's dtype, and lengths (B,).
        """
        c = self.config
        u, x, mask, eps = (self._tensor(v) for v in (u, x, mask, eps))
        check_batch_shapes(tuple(u.shape), tuple(x.shape), tuple(mask.shape), tuple(eps.shape), c)
        B = x.shape[0]
        d_0 = x.new_zeros(B, c.d_dim) if d_0 is None else self._state("d_0", d_0, (B, c.d_dim))
        z_0 = x.new_zeros(B, c.z_dim) if z_0 is None else self._state("z_0", z_0, (B, c.z_dim))
        checks = value_checks(u, x, mask, eps, d_0, z_0, c)
        raise_first_failure(checks, torch.stack([ok for ok, _ in checks]).tolist())  # one transfer from the device
        lengths = mask.sum(1).long()
        valid = mask[..., None] == 1
        # padded steps are zeroed so that no finite value there can overflow into a masked term
        return u * valid, x * valid, mask, eps * valid, d_0, z_0, lengths

    def _state(self, name, v, shape):
        v = self._tensor(v)
        check_state_shape(name, tuple(v.shape), shape)
        return v


class SRNN(SequenceModel):
    """The SRNN of docs/model.md §4 as an nn.Module (entry points: `SequenceModel`)."""

    MODEL = "srnn"

    def _add_modules(self):
        c = self.config
        self.gru_d = nn.GRU(c.e_dim, c.d_dim, batch_first=True)
        if c.inference == "smoothing":
            self.gru_a = nn.GRU(c.d_dim + c.e_dim, c.a_dim, batch_first=True)
        else:
            self.filter = nn.ModuleDict(dense_stack(c.d_dim + c.e_dim, c.a_dim, c.mlp_layers)[0])
        for name in Z_MLPS:  # the prior's MLPs condition on [d_t, z_{t−1}], the posterior's on [a_t, z_{t−1}]
            n_cond = c.d_dim if name.startswith("prior") else a_width(c)
            setattr(self, name, self._mlp(n_cond + c.z_dim, {"out": c.z_dim}))
        self.emit = self._emission_mlp(c.d_dim + c.z_dim)

    # -----------------------------------------------------------------------------------
    # The recurrences
    # -----------------------------------------------------------------------------------

    def inference_network(self, d, e_x, lengths):
        """The states a_t of q(z_t | z_{t−1}, a_t) — eq. (5).

        smoothing: a_t = GRU_a(a_{t+1}, [d_t, e(x_t)]) backwards from each T_i with
        a_{T_i+1} = 0: each valid prefix is reversed in place, run forwards, and reversed back.
        filtering: the `filter` hidden stack on [d_t, e(x_t)].
        d: (B, T, d_dim); e_x: (B, T, e_dim); lengths: (B,) T_i. Returns a: (B, T, a_width).
        """
        v = torch.cat([d, e_x], -1)  # (B, T, d_dim + e_dim)
        if self.config.inference == "filtering":
            return self._hidden_stack(self.filter, v, self.config.mlp_layers)
        T = v.shape[1]
        t = torch.arange(T, device=v.device)
        # row i: T_i − 1 … 0 on its valid prefix, then the padded steps where they are (an involution)
        order = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)[..., None]  # (B, T, 1)
        a_reversed = self.gru_a(v.gather(1, order.expand_as(v)))[0]
        return a_reversed.gather(1, order.expand_as(a_reversed))

    def _z_step_weights(self, n_prior, n_post):
        """The four prior / posterior MLPs split for the loop over time.

        Returns (cond_prior, cond_post, W_z, stacked): the first layers' parts acting on
        d_t (cond_prior: (W, b) of the two prior MLPs, concatenated) and on a_t
        (cond_post), their z_{t−1} parts as one matrix W_z (4·width, z_dim), and the
        remaining layers of the four MLPs (`stacked_later_layers`).
        """
        mlps, L = [getattr(self, name) for name in Z_MLPS], self.config.mlp_layers
        W_d, W_zp, b_d = split_first_layers(mlps[:2], n_prior, L)
        W_a, W_zq, b_a = split_first_layers(mlps[2:], n_post, L)
        return (W_d, b_d), (W_a, b_a), torch.cat([W_zp, W_zq]), stacked_later_layers(mlps, L)

    def stochastic_layer(self, d, a, eps, z_0):
        """One sampled path z_{1:T} ~ Π_t q(z_t | z_{t−1}, a_t), with the prior at each step — eq. (5)–(7).

        Prior p(z_t | z_{t−1}, d_t) = N(mu_p, exp(logvar_p)), posterior q(z_t | z_{t−1}, a_t)
        = N(mu_q, exp(logvar_q)) (mu_q = mu_p + MLP output with Resq), z_t = mu_q +
        exp(logvar_q / 2) ⊙ eps_t.
        d: (B, T, d_dim); a: (B, T, a_width); eps: (B, T, z_dim); z_0: (B, z_dim).
        Returns z, mu_p, logvar_p, mu_q, logvar_q, each (B, T, z_dim).
        """
        c = self.config
        (W_d, b_d), (W_a, b_a), W_z, stacked = self._z_step_weights(d.shape[-1], a.shape[-1])
        # the parts of the first layers that do not depend on z, for all steps, split into steps
        # with unbind (whose backward stacks once; indexing cond[t] would add T full-size gradients)
        cond = torch.cat([F.linear(d, W_d, b_d), F.linear(a, W_a, b_a)], -1).unbind(1)  # T × (B, 4·width)
        eps = eps.unbind(1)                                                              # T × (B, z_dim)
        z_tm1, steps = z_0, []
        for t in range(len(cond)):
            pre = cond[t] + z_tm1 @ W_z.T                        # (B, 4·width): first layers of the four MLPs
            out = run_later_layers(pre, 4, stacked, c.clip)      # (4, B, z_dim)
            mu_p, logvar_p = out[0], variance_head(out[1], c.var_floor)
            mu_q, logvar_q = out[2] + mu_p if c.residual_q else out[2], variance_head(out[3], c.var_floor)
            z_t = mu_q + torch.exp(0.5 * logvar_q) * eps[t]     # reparameterisation
            steps.append((z_t, mu_p, logvar_p, mu_q, logvar_q))
            z_tm1 = z_t
        return tuple(torch.stack(seq, 1) for seq in zip(*steps))

    # -----------------------------------------------------------------------------------
    # Bounds
    # -----------------------------------------------------------------------------------

    def _elbo_terms(self, u, x, eps, lengths, d_0, z_0):
        """log p(x_t | z_t, d_t) and KL(q(z_t | z_{t−1}, a_t) ‖ p(z_t | z_{t−1}, d_t)) — eq. (6)."""
        d, a = self._deterministic_and_inference_states(u, x, lengths, d_0)
        z, mu_p, logvar_p, mu_q, logvar_q = self.stochastic_layer(d, a, eps, z_0)
        log_px = self.emission_log_prob(x, torch.cat([d, z], -1))                 # (B, T)
        kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)                          # (B, T)
        return log_px, kl, at_last_steps(d, lengths), at_last_steps(z, lengths)

    def _log_weights(self, u, x, eps, lengths, d_0, z_0):
        """log p(x_t | z_t^k, d_t) + log p(z_t^k | z_{t−1}^k, d_t) − log q(z_t^k | z_{t−1}^k, a_t) — §4.5.

        The K paths run as one batch of K·B rows; d and a do not depend on z and are computed once.
        """
        K = eps.shape[0]
        d, a = self._deterministic_and_inference_states(u, x, lengths, d_0)
        tile = lambda v: tile_paths(v, K)
        z, mu_p, logvar_p, mu_q, logvar_q = self.stochastic_layer(tile(d), tile(a), eps.flatten(0, 1), tile(z_0))
        log_w = (self.emission_log_prob(tile(x), torch.cat([tile(d), z], -1))
                 + gaussian_log_prob(z, mu_p, logvar_p) - gaussian_log_prob(z, mu_q, logvar_q))  # (K·B, T)
        return log_w.view(K, *x.shape[:2])

    def _deterministic_and_inference_states(self, u, x, lengths, d_0):
        d = self.deterministic_layer(self.feature_extractor(u), d_0)
        return d, self.inference_network(d, self.feature_extractor(x), lengths)

    def _sample_step(self, u_t, d_tm1, z_tm1, eps_z_t):
        """d_t = GRU_d(d_{t−1}, e(u_t)), z_t ~ p(z_t | z_{t−1}, d_t), the emission on [d_t, z_t] — eq. (1)–(2)."""
        c = self.config
        d_t = self.deterministic_layer(self.feature_extractor(u_t)[:, None], d_tm1)[:, 0]
        v = torch.cat([d_t, z_tm1], -1)
        mu_p = self._mlp_forward(self.prior_mu, v)
        logvar_p = variance_head(self._mlp_forward(self.prior_logvar, v), c.var_floor)
        z_t = mu_p + torch.exp(0.5 * logvar_p) * eps_z_t
        return d_t, z_t, self.emission(torch.cat([d_t, z_t], -1))


def contract_name(key):
    """State-dict key -> contract name: `prior_mu.0.weight` -> `prior_mu.0.W`."""
    prefix, attr = key.rsplit(".", 1)
    return f"{prefix}.{_CONTRACT_SUFFIX[attr]}"
