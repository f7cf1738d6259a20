"""BitNet b1.58 (the BitNet-b1.58-2B-4T architecture) in PyTorch, for
quantization-aware training and as the numerical reference for bitnet-chat.

Every ternary linear computes exactly what the engine computes at inference:
  weights:     gamma = mean|W| (fp32, clamped >= 1e-5, then rounded to bf16 so
               that every file format stores it exactly), W_t = clamp(round(W/gamma), -1, 1)
  activations: per token s = 127 / max(max|x|, 1e-5) (fp32),
               x_q = clamp(round(x*s), -128, 127)   (torch.round = half to even)
  output:      y = (sum_k x_q[k] * W_t[n,k]) / s * gamma   (fp32)
The integer dot product is done as an fp32 (or TF32) matmul of small integers:
|x_q| <= 127 and W_t in {-1,0,1} are exact in TF32, and partial sums stay far
below 2^24, so the result equals the engine's int32 accumulation exactly.
Gradients use the straight-through estimator (identity through both roundings).
"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


def weight_ternary(w):
    """(W_t, gamma) for one matrix, computed in fp32; gamma rounded to bf16."""
    w = w.float()
    gamma = w.abs().mean().clamp(min=1e-5).to(torch.bfloat16).float()
    wt = torch.clamp(torch.round(w * (1.0 / gamma)), -1, 1)
    return wt, gamma


def act_quant(x):
    """(x_q, s) per token (last dim), fp32."""
    x = x.float()
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = torch.clamp(torch.round(x * s), -128, 127)
    return xq, s


class _BitLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        wt, gamma = weight_ternary(w)
        xq, s = act_quant(x)
        acc = xq @ wt.t()
        y = acc / s * gamma
        ctx.save_for_backward(xq, s, wt, gamma)
        return y

    @staticmethod
    def backward(ctx, gy):
        xq, s, wt, gamma = ctx.saved_tensors
        gx = (gy @ wt) * gamma          # STE: d(x_q/s)/dx = 1
        gw = gy.reshape(-1, gy.shape[-1]).t() @ (xq / s).reshape(-1, xq.shape[-1])  # STE: dW_eff/dW = 1
        return gx, gw


class BitLinear(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        assert d_in % 128 == 0, "the engine's I2_S blocks need input dims that are multiples of 128"
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return _BitLinearFn.apply(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cos_sin(pos, head_dim, theta):
    """pos: [B, T] int positions -> cos, sin [B, 1, T, head_dim] (rotate-half layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=pos.device) / head_dim))
    ang = pos.float()[..., None] * inv_freq            # [B, T, hd/2]
    ang = torch.cat([ang, ang], dim=-1)[:, None]        # [B, 1, T, hd]
    return ang.cos(), ang.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["hidden_size"], c["head_dim"]
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], hd
        eps = c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(d, eps)
        self.q_proj = BitLinear(d, self.nh * hd)
        self.k_proj = BitLinear(d, self.nkv * hd)
        self.v_proj = BitLinear(d, self.nkv * hd)
        self.attn_sub_norm = RMSNorm(self.nh * hd, eps)
        self.o_proj = BitLinear(self.nh * hd, d)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.gate_proj = BitLinear(d, c["intermediate_size"])
        self.up_proj = BitLinear(d, c["intermediate_size"])
        self.ffn_sub_norm = RMSNorm(c["intermediate_size"], eps)
        self.down_proj = BitLinear(c["intermediate_size"], d)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv                      # query head h uses kv head h // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if self.training:
            # training only: attention in bf16 for speed (the reference/eval path stays fp32)
            q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
        if mask is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / math.sqrt(self.hd))
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(self.hd))
        a = a.float().transpose(1, 2).reshape(B, T, self.nh * self.hd)
        x = x + self.o_proj(self.attn_sub_norm(a))
        h = self.post_attention_layernorm(x)
        m = F.relu(self.gate_proj(h)).square() * self.up_proj(h)
        x = x + self.down_proj(self.ffn_sub_norm(m))
        return x


class BitNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        self.layers = nn.ModuleList([Block(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, ids, pos, mask=None):
        """ids, pos: [B, T]; mask: bool [B, 1, T, T] (True = attend) or None for plain causal."""
        x = self.embed_tokens(ids).float()
        cos, sin = rope_cos_sin(pos, self.c["head_dim"], self.c["rope_theta"])
        for l in self.layers:
            x = l(x, cos, sin, mask)
        x = self.norm(x)
        return x @ self.embed_tokens.weight.float().t()   # tied lm_head, full precision

    @torch.no_grad()
    def round_to_shipped(self):
        """Snap parameters to what the shipped files store exactly: norms to bf16,
        the embedding to values exact in both f16 (GGUF) and bf16 (safetensors)."""
        for n, p in self.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(p.to(torch.bfloat16).float())
        e = self.embed_tokens.weight
        e.copy_(e.to(torch.float16).to(torch.bfloat16).float())
        assert torch.equal(e.to(torch.float16).float(), e)


def pack_hf_ternary(wt):
    """HF 'bitnet' packing: uint8 [N/4, K]; bits 2i..2i+1 of byte [r, k] hold row r + i*N/4, code = t + 1."""
    N, K = wt.shape
    assert N % 4 == 0
    codes = (wt.to(torch.int64) + 1).to(torch.uint8)
    q = N // 4
    out = torch.zeros(q, K, dtype=torch.uint8)
    for i in range(4):
        out |= codes[i * q:(i + 1) * q] << (2 * i)
    return out


def unpack_hf_ternary(p):
    q, K = p.shape
    rows = [((p >> (2 * i)) & 3).to(torch.int64) - 1 for i in range(4)]
    return torch.cat(rows, 0).float()
