"""A PyTorch masked autoencoder written the way the MAE reference code (``models_mae.py``,
facebookresearch/mae) writes it, to check minivit's hand-written MAE against autograd.

It reuses the timm-style ``PatchEmbed`` and ``Block`` of ``minivit/reference/torch_twin.py``, and
its ``state_dict`` has minivit's MAE parameter names (``load_state_dict(strict=True)``).
Masking is the reference's: argsort of the given noise, ``torch.gather`` to keep and to
unshuffle; the loss is the reference's ``forward_loss`` (``torch.var`` is unbiased).  The
number kept is N - round(N * mask_ratio), minivit's rule (the reference's int(N * (1 - r))
gives the same for the ratios tested).  Needs torch: import after
``pytest.importorskip("torch")``.
"""

import torch
from torch import nn

from minivit.reference.torch_twin import LN_EPS, Block, PatchEmbed, to_torch


class TorchMAE(nn.Module):
    def __init__(self, cfg, decoder_pos_embed):
        """cfg: minivit.models.mae.MAEConfig; decoder_pos_embed: the fixed (1, N+1, Dd) array when
        cfg.decoder_pos_embed == "sincos" (a buffer), ignored when learned (a parameter)."""
        super().__init__()
        enc, dec = cfg.encoder, cfg.decoder_config()
        N, D, Dd = enc.num_patches, enc.embed_dim, cfg.decoder_embed_dim
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, N + 1, D))
        self.patch_embed = PatchEmbed(enc)
        self.blocks = nn.ModuleList([Block(enc) for _ in range(enc.depth)])
        self.norm = nn.LayerNorm(D, eps=LN_EPS)
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        if cfg.decoder_pos_embed == "learned":
            self.decoder_pos_embed = nn.Parameter(torch.zeros(1, N + 1, Dd))
        else:
            self.register_buffer("decoder_pos_embed", to_torch(decoder_pos_embed),
                                 persistent=False)
        self.decoder_blocks = nn.ModuleList([Block(dec) for _ in range(dec.depth)])
        self.decoder_norm = nn.LayerNorm(Dd, eps=LN_EPS)
        self.decoder_pred = nn.Linear(Dd, enc.patch_dim)

    def patchify(self, imgs):
        """(B, C, H, W) -> (B, N, P*P*C), (row, column, channel) inside a patch."""
        p, c = self.cfg.encoder.patch_size, imgs.shape[1]
        h, w = imgs.shape[2] // p, imgs.shape[3] // p
        x = imgs.reshape(imgs.shape[0], c, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(imgs.shape[0], h * w, p * p * c)

    def random_masking(self, x, noise):
        B, L, D = x.shape
        len_keep = L - round(L * self.cfg.mask_ratio)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones([B, L], dtype=x.dtype)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, x, noise):
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, noise)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6) ** .5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs, noise):
        latent, mask, ids_restore = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask


def torch_mae_gradients(model, images, noise):
    """Autograd's answer for a minivit MaskedAutoencoder: (loss, pred, mask, grads, dimages),
    all NumPy / float, computed in the parameters' dtype with the same noise."""
    tm = TorchMAE(model.config, model.fixed_decoder_pos_embed)
    tm = tm.to(to_torch(images).dtype)
    tm.load_state_dict({k: to_torch(v) for k, v in model.params.items()}, strict=True)
    x = to_torch(images).requires_grad_(True)
    loss, pred, mask = tm(x, to_torch(noise))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    return loss.item(), pred.detach().numpy(), mask.numpy(), grads, x.grad.numpy()
