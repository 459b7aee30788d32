"""The VRNN of docs/model.md §8 (Chung et al., NIPS 2015) in PyTorch, computing what ref/vrnn.py computes.

    h_t = GRU_h(h_{t−1}, [e(u_t), φ_z(z_{t−1})])       eq. (V1)
    p(z_t | h_t)      = N(μ_p, e^{λ_p})                 eq. (V2)
    q(z_t | x_t, h_t) = N(μ_q, e^{λ_q})                 eq. (V3)
    p(x_t | z_t, h_t) from `emit`([h_t, φ_z(z_t)])      eq. (V4)

z_{t−1} feeds the recurrence, so h, the posterior and z run in one loop over t; laid out for speed,
as the SRNN is, with the same function:
- the parts that do not depend on z act on all steps before the loop: the e(u_t) part of GRU_h's
  input projection and the e(x_t) part of the posterior MLPs' first layers;
- the prior (V2) and the emission (V4) feed nothing back, so they act on all steps after it;
- in the loop, the two posterior MLPs run as one matrix product and batched products.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ref.params import Z_MLPS

from .model import (SequenceModel, at_last_steps, dense_stack, gaussian_kl, gaussian_log_prob, run_later_layers,
                    split_first_layers, stacked_later_layers, tile_paths, variance_head)


def gru_cell(h, proj, W_hh, b_hh):
    """One step h' = GRU(h, v) in PyTorch's convention, gates (r, z, n), given proj = W_ih v + b_ih (docs/model.md §3).

    h: (B, H); proj: (B, 3H). Returns h': (B, H).
    """
    r_i, z_i, n_i = proj.chunk(3, -1)
    r_h, z_h, n_h = F.linear(h, W_hh, b_hh).chunk(3, -1)
    r, z_gate = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)  # reset and update gates
    n = torch.tanh(n_i + r * n_h)                                     # candidate state
    return (1.0 - z_gate) * n + z_gate * h


class VRNN(SequenceModel):
    """The VRNN of docs/model.md §8 as an nn.Module (entry points: `SequenceModel`); its states
    (d_0, z_0) and (d_last, z_last) are (h_0, z_0) and (h_{T_i}, z_{T_i})."""

    MODEL = "vrnn"

    def _add_modules(self):
        c = self.config
        self.embed_z = nn.ModuleDict(dense_stack(c.z_dim, c.h_dim, c.embed_layers)[0])
        self.gru_h = nn.GRUCell(c.e_dim + c.ez_dim, c.d_dim)
        for name in Z_MLPS:  # the prior's MLPs condition on h_t, the posterior's on [h_t, e(x_t)]
            setattr(self, name, self._mlp(c.d_dim + (c.e_dim if name.startswith("post") else 0), {"out": c.z_dim}))
        self.emit = self._emission_mlp(c.d_dim + c.ez_dim)

    def z_features(self, z):
        """φ_z(z): the `embed_z` hidden stack; the identity when embed_layers = 0. (..., z_dim) -> (..., ez_dim)"""
        return self._hidden_stack(self.embed_z, z, self.config.embed_layers)

    def _recurrence_weights(self):
        """GRU_h's input weights split into the e(u_t) and the φ_z(z_{t−1}) parts: (W_u, b_ih), W_z."""
        W_u, W_z = self.gru_h.weight_ih.split([self.config.e_dim, self.config.ez_dim], 1)
        return (W_u, self.gru_h.bias_ih), W_z

    def recurrence(self, h_tm1, proj_u_t, phi_z_tm1, W_z):
        """h_t = GRU_h(h_{t−1}, [e(u_t), φ_z(z_{t−1})]) — eq. (V1), given proj_u_t = W_u e(u_t) + b_ih. (B, ·)"""
        return gru_cell(h_tm1, proj_u_t + F.linear(phi_z_tm1, W_z), self.gru_h.weight_hh, self.gru_h.bias_hh)

    def prior(self, h):
        """p(z_t | h_t) = N(mu_p, exp(logvar_p)) — eq. (V2). h: (..., d_dim)."""
        return self._mlp_forward(self.prior_mu, h), variance_head(self._mlp_forward(self.prior_logvar, h),
                                                                  self.config.var_floor)

    def sampled_path(self, e_u, e_x, eps, h_0, z_0):
        """One path z_{1:T} ~ Π_t q(z_t | x_t, h_t) with the states h_t it drives — eq. (V1), (V3).

        e_u, e_x: (B, T, e_dim) features of u and x; eps: (B, T, z_dim); h_0: (B, d_dim); z_0: (B, z_dim).
        Returns h, z, phi_z (φ_z(z_t)), mu_q, logvar_q, each (B, T, ·).
        """
        c = self.config
        (W_u, b_u), W_z = self._recurrence_weights()
        post = [self.post_mu, self.post_logvar]
        W_h, W_x, b_x = split_first_layers(post, c.d_dim, c.mlp_layers)
        stacked = stacked_later_layers(post, c.mlp_layers)
        # the parts that do not depend on z, for all steps, split into steps with unbind (one stack on the way back)
        proj_u = F.linear(e_u, W_u, b_u).unbind(1)   # T × (B, 3·d_dim)
        cond_x = F.linear(e_x, W_x, b_x).unbind(1)   # T × (B, 2·width)
        eps = eps.unbind(1)
        h_tm1, phi_z_tm1, steps = h_0, self.z_features(z_0), []
        for t in range(len(eps)):
            h_t = self.recurrence(h_tm1, proj_u[t], phi_z_tm1, W_z)                         # eq. (V1)
            out = run_later_layers(cond_x[t] + F.linear(h_t, W_h), 2, stacked, c.clip)   # (2, B, z_dim)
            mu_q, logvar_q = out[0], variance_head(out[1], c.var_floor)                 # eq. (V3)
            z_t = mu_q + torch.exp(0.5 * logvar_q) * eps[t]                            # reparameterisation
            phi_z_t = self.z_features(z_t)
            steps.append((h_t, z_t, phi_z_t, mu_q, logvar_q))
            h_tm1, phi_z_tm1 = h_t, phi_z_t
        return tuple(torch.stack(seq, 1) for seq in zip(*steps))

    def _path_terms(self, u, x, eps, h_0, z_0):
        """One path (V1)–(V3) and what the bounds need of it: h, z, log p(x_t | z_t, h_t) (V4),
        and the prior's and the posterior's (mean, log-variance)."""
        h, z, phi_z, mu_q, logvar_q = self.sampled_path(self.feature_extractor(u), self.feature_extractor(x),
                                                        eps, h_0, z_0)
        log_px = self.emission_log_prob(x, torch.cat([h, phi_z], -1))  # (B, T), eq. (V4)
        return h, z, log_px, self.prior(h), (mu_q, logvar_q)

    def _elbo_terms(self, u, x, eps, lengths, h_0, z_0):
        """log p(x_t | z_t, h_t) and KL(q(z_t | x_t, h_t) ‖ p(z_t | h_t)) — §8.4."""
        h, z, log_px, prior, posterior = self._path_terms(u, x, eps, h_0, z_0)
        return log_px, gaussian_kl(*posterior, *prior), at_last_steps(h, lengths), at_last_steps(z, lengths)

    def _log_weights(self, u, x, eps, lengths, h_0, z_0):
        """log p(x_t | z^k_t, h^k_t) + log N(z^k_t | μ^k_p, e^{λ^k_p}) − log N(z^k_t | μ^k_q, e^{λ^k_q}) — §8.4.

        h depends on the path's z, so the whole recurrence runs on the K·B rows.
        """
        K = eps.shape[0]
        tile = lambda v: tile_paths(v, K)
        _, z, log_px, prior, posterior = self._path_terms(tile(u), tile(x), eps.flatten(0, 1), tile(h_0), tile(z_0))
        log_w = log_px + gaussian_log_prob(z, *prior) - gaussian_log_prob(z, *posterior)  # (K·B, T)
        return log_w.view(K, *x.shape[:2])

    def _sample_step(self, u_t, h_tm1, z_tm1, eps_z_t):
        """h_t by (V1), z_t ~ p(z_t | h_t) (V2), the emission on [h_t, φ_z(z_t)] (V4) — §8.3."""
        (W_u, b_u), W_z = self._recurrence_weights()
        h_t = self.recurrence(h_tm1, F.linear(self.feature_extractor(u_t), W_u, b_u), self.z_features(z_tm1), W_z)
        mu_p, logvar_p = self.prior(h_t)
        z_t = mu_p + torch.exp(0.5 * logvar_p) * eps_z_t
        return h_t, z_t, self.emission(torch.cat([h_t, self.z_features(z_t)], -1))
