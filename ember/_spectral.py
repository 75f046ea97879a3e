"""Short-time Fourier transforms (``ember.stft``, ``ember.istft``), composed of ember ops
(padding, framing, windowing, FFT, overlap-add), so they are differentiable."""

from __future__ import annotations

import warnings

from . import _dtype as D
from ._autocast import autocast_function


def _window(window, win_length, n_fft, dtype, op):
    from .ops.creation import ones
    if window is None:
        if op == "stft":
            warnings.warn("stft: no window given, so a rectangular one is used, which leaks "
                          "spectral energy between bins; pass e.g. ember.hann_window(n_fft), "
                          "or ember.ones(n_fft) to keep the rectangular window silently.",
                          UserWarning, stacklevel=3)
        window = ones(win_length, dtype=dtype)
    if window.ndim != 1 or window.shape[0] != win_length:
        raise RuntimeError(f"{op}: expected a 1D window tensor of size equal to win_length="
                           f"{win_length}, but got window with size {list(window.shape)}")
    if win_length < n_fft:  # centred in a frame of n_fft
        from .nn.functional import pad
        left = (n_fft - win_length) // 2
        window = pad(window, (left, n_fft - win_length - left))
    return window


def _lengths(n_fft, hop_length, win_length, op):
    hop = n_fft // 4 if hop_length is None else hop_length
    win = n_fft if win_length is None else win_length
    if n_fft <= 0:
        raise RuntimeError(f"{op}: expected 0 < n_fft, but got n_fft={n_fft}")
    if hop <= 0:
        raise RuntimeError(f"{op}: expected hop_length > 0, but got hop_length={hop}")
    if win <= 0 or win > n_fft:
        raise RuntimeError(f"{op}: expected 0 < win_length <= n_fft, but got win_length={win}")
    return hop, win


@autocast_function("fp32")
def stft(input, n_fft, hop_length=None, win_length=None, window=None, center=True,
         pad_mode="reflect", normalized=False, onesided=None, return_complex=None):
    """The short-time Fourier transform of ``input`` (``(L,)`` or ``(B, L)``):
    ``(B?, n_fft // 2 + 1 or n_fft, frames)``, complex (or its real view when
    ``return_complex=False``)."""
    from . import fft
    from .nn.functional import pad
    complex_in = input.is_complex() or (window is not None and window.is_complex())
    if return_complex is None:
        if not complex_in:
            raise RuntimeError("stft requires the return_complex parameter be given for real "
                               "inputs, and will further require that return_complex=True in "
                               "a future PyTorch release.")
        return_complex = True
    if not return_complex:
        warnings.warn("stft with return_complex=False is deprecated. In a future pytorch "
                      "release, stft will return complex tensors for all inputs, and "
                      "return_complex=False will raise an error.", UserWarning, stacklevel=2)
    if input.ndim not in (1, 2):
        raise RuntimeError(f"stft: expected a 1D or 2D tensor, but got {input.ndim}D")
    hop, win = _lengths(n_fft, hop_length, win_length, "stft")
    batched = input.ndim == 2
    x = input if batched else input.unsqueeze(0)
    if not (x.is_floating_point() or x.is_complex()):
        x = x.to(D.get_default_dtype())
    if center:
        p = n_fft // 2
        x = pad(x.unsqueeze(1), (p, p), mode=pad_mode).squeeze(1)
    length = x.shape[-1]
    if n_fft > length:
        raise RuntimeError(f"stft: expected 0 < n_fft <= {length}, but got n_fft={n_fft}")
    w = _window(window, win, n_fft, x.dtype if not x.is_complex() else
                (D.float32 if x.dtype is D.complex64 else D.float64), "stft")
    frames = x.unfold(-1, n_fft, hop) * w  # (B, n_frames, n_fft)
    if onesided is None:
        onesided = not complex_in
    if onesided and complex_in:
        raise RuntimeError("Cannot have onesided output if window or input is complex")
    spec = (fft.rfft if onesided else fft.fft)(frames, dim=-1,
                                               norm="ortho" if normalized else "backward")
    spec = spec.transpose(-1, -2)
    if not batched:
        spec = spec.squeeze(0)
    if not return_complex:
        from .ops.shape import view_as_real
        return view_as_real(spec.contiguous())
    return spec


def istft(input, n_fft, hop_length=None, win_length=None, window=None, center=True,
          normalized=False, onesided=None, length=None, return_complex=False):
    """The inverse of ``stft`` by weighted overlap-add: ``(B?, length)``."""
    from . import fft
    from .nn.functional import fold, pad
    if not input.is_complex():
        raise RuntimeError("istft requires a complex-valued input tensor matching the output "
                           "from stft with return_complex=True.")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"istft: expected a tensor with 2 or 3 dimensions of complex, but "
                           f"got {input.ndim}")
    hop, win = _lengths(n_fft, hop_length, win_length, "istft")
    batched = input.ndim == 3
    spec = input if batched else input.unsqueeze(0)
    n_freq, n_frames = spec.shape[-2], spec.shape[-1]
    if onesided is None:
        onesided = n_freq != n_fft
    if onesided and n_freq != n_fft // 2 + 1:
        raise RuntimeError(f"istft: expected the frequency dimension (3rd to the last) of the "
                           f"input tensor to match n_fft / 2 + 1 when onesided=True, but got "
                           f"{n_freq}")
    if not onesided and n_freq != n_fft:
        raise RuntimeError(f"istft: expected the frequency dimension (3rd to the last) of the "
                           f"input tensor to match n_fft when onesided=False, but got {n_freq}")
    if onesided and return_complex:
        raise RuntimeError("cannot have onesided output if window or input is complex")
    real_dt = D.float32 if spec.dtype is D.complex64 else D.float64
    w = _window(window, win, n_fft, real_dt, "istft")
    norm = "ortho" if normalized else "backward"
    spec = spec.transpose(-1, -2)  # (B, n_frames, n_freq)
    if onesided:
        frames = fft.irfft(spec, n=n_fft, dim=-1, norm=norm)
    else:
        frames = fft.ifft(spec, n=n_fft, dim=-1, norm=norm)
        if not return_complex:
            frames = frames.real
    frames = frames * w
    total = n_fft + hop * (n_frames - 1)

    def overlap_add(f):  # (B, n_frames, n_fft) -> (B, total)
        return fold(f.transpose(-1, -2), output_size=(1, total), kernel_size=(1, n_fft),
                    stride=(1, hop)).reshape(f.shape[0], total)
    if frames.is_complex():
        y = overlap_add(frames.real) + overlap_add(frames.imag) * 1j
    else:
        y = overlap_add(frames)
    env = overlap_add((w * w).reshape(1, 1, n_fft).expand(1, n_frames, n_fft))[0]
    start = n_fft // 2 if center else 0
    if length is None:
        end = total - (n_fft // 2 if center else 0)
    else:
        end = start + length
    end_in = min(end, total)
    y = y[:, start:end_in]
    env = env[start:end_in]
    if env.numel() and float(env.abs().min()) < 1e-11:
        raise RuntimeError("istft: window overlap add min: " + str(float(env.abs().min())))
    y = y / env
    if end > total:  # a longer ``length`` than the frames cover: zeros at the end
        y = pad(y.unsqueeze(1), (0, end - total)).squeeze(1)
    return y if batched else y.squeeze(0)
