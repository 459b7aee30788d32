"""The RNN baseline of docs/model.md §7 in PyTorch, computing what ref/rnn.py computes: the SRNN without
its stochastic layer.

    d_t = GRU_d(d_{t−1}, e(u_t))          eq. (R1), the SRNN's eq. (2) as it is
    p(x_t | d_t) from the `emit` MLP       eq. (R2)

Nothing is latent: the ELBO (for every kl_weight) and every IW log weight are the exact log-likelihood
Σ_t log p(x_t | d_t), KL_t = 0; eps keeps its shape and is not used, and z_0 passes through as z_last (§7.3).
"""
import torch
from torch import nn

from .model import SequenceModel, at_last_steps


class RNN(SequenceModel):
    """The RNN of docs/model.md §7 as an nn.Module (entry points: `SequenceModel`)."""

    MODEL = "rnn"

    def _add_modules(self):
        c = self.config
        self.gru_d = nn.GRU(c.e_dim, c.d_dim, batch_first=True)
        self.emit = self._emission_mlp(c.d_dim)

    def _log_likelihood_terms(self, u, x, d_0):
        """d_{1:T} by (R1), and log p(x_t | d_t) by (R2), (B, T)."""
        d = self.deterministic_layer(self.feature_extractor(u), d_0)
        return d, self.emission_log_prob(x, d)

    def _elbo_terms(self, u, x, eps, lengths, d_0, z_0):
        """log p(x_t | d_t), KL_t = 0 — §7.3."""
        d, log_px = self._log_likelihood_terms(u, x, d_0)
        return log_px, torch.zeros_like(log_px), at_last_steps(d, lengths), z_0

    def _log_weights(self, u, x, eps, lengths, d_0, z_0):
        """Every path's weight is the log-likelihood — §7.3."""
        return self._log_likelihood_terms(u, x, d_0)[1].expand(eps.shape[0], -1, -1)

    def _sample_step(self, u_t, d_tm1, z_tm1, eps_z_t):
        """d_t by (R1), the emission on d_t (R2); z stays as it is (zeros) and eps_z is not used."""
        d_t = self.deterministic_layer(self.feature_extractor(u_t)[:, None], d_tm1)[:, 0]
        return d_t, z_tm1, self.emission(d_t)
