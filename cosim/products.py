"""Exact 0/1 matrix products: which dtype holds the bits, chosen by what the running device does fast.

Every AND-count of cosim is a product of 0/1 matrices. Such a product is exact in a floating dtype as
long as every partial sum is an integer the dtype holds: up to 256 in bfloat16 (8-bit significand),
2048 in float16 (11 bits) and 2**24 in float32. Which of them is fast depends on the processor, by a
factor of 100 and more:

- an Intel Xeon with AMX runs bfloat16 products on its matrix units (and float16 ones where it has
  AVX-512 FP16 or AMX-FP16);
- an AMD EPYC with AVX-512 BF16 but no AVX-512 FP16 runs bfloat16 about 5x faster than float32, and
  float16 28-47x *slower* than float32 (measured twice on 8192x1152 by 1152x128 bits);
- a CPU without AVX-512 BF16 emulates bfloat16 too.

So the dtype is never fixed to one machine's strengths: :func:`bits_dtype` takes, among the dtypes
exact for an array of ``rows`` rows, the fastest one by a short timing probe of the running device
(0.1-0.3 s, once per process and device), with float32 (exact everywhere) as the portable fallback.
On CUDA devices float16 is taken without a probe (tensor cores run it on every GPU cosim supports).

``COSIM_BITS_DTYPE`` (``float32``, ``bfloat16``, ``float16`` or ``auto``, the default) forces a dtype
wherever it is exact for the array (float32 elsewhere): ``float32`` is the portable path that CI runs
too.

The surrogate's moment products are float32 by necessity (real-valued basis functions). torch sends
float32 products on CPU to its BLAS (MKL), which on some CPUs (AMD EPYC among them) runs its AVX2 code
where oneDNN runs AVX-512: :func:`f32_kernel` picks, by the same kind of probe, ``torch.matmul`` or
oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, the same float32 arithmetic in another order of
summation), and :func:`matmul_f32` runs it. ``COSIM_F32_PRODUCT`` (``blas``, ``onednn``, ``auto``) forces
the choice. :func:`describe` says what was chosen and why, for provenance.

Signed sums of bit products (the ideal arrays' reads of many row tiles at once: integers of magnitude at
most the rows summed) are also exact as int8 products with int32 sums, which some CPUs run faster than
the bit dtype's products grouped to stay exact (AMD EPYC with AVX-512 VNNI: 1.3-2.4x, ResNet-18 layer shapes,
the conversion of the bits included): :func:`int8_products` says whether to use them, by a probe of the two
(``COSIM_INT8_PRODUCT``: ``on``, ``off`` or ``auto`` forces it; ``off`` is the portable path CI runs too).
"""

from __future__ import annotations

import os
import time
from functools import lru_cache

import torch

from .errors import InputError

#: the largest integer every partial sum of a 0/1 product may reach and stay exact, per dtype
EXACT_LIMIT = {torch.bfloat16: 256, torch.float16: 2048, torch.float32: 2 ** 24}
_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: a low-precision dtype must beat float32 by this factor in the probe to be chosen (probe noise)
MIN_GAIN = 1.25
ENV = "COSIM_BITS_DTYPE"
F32_ENV = "COSIM_F32_PRODUCT"
F32_KERNELS = ("blas", "onednn")
INT8_ENV = "COSIM_INT8_PRODUCT"


def exact_limit(dtype: torch.dtype) -> int:
    """Largest count that 0/1 products and sums in ``dtype`` hold exactly."""
    try:
        return EXACT_LIMIT[dtype]
    except KeyError:
        raise InputError(f"{dtype} is not a dtype for bit tensors (expected one of "
                         f"{', '.join(str(d) for d in EXACT_LIMIT)})") from None


def forced_dtype() -> torch.dtype | None:
    """The dtype ``COSIM_BITS_DTYPE`` forces, or None for the automatic choice."""
    name = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if name == "auto":
        return None
    try:
        return _NAMES[name]
    except KeyError:
        raise InputError(f"{ENV}={name!r}: expected auto, {', '.join(_NAMES)}") from None


def _device_key(device) -> str:
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return str(d)


def _best_time(fn, reps: int = 5, slow_s: float = 0.05) -> float:
    """Shortest of ``reps`` timed calls of ``fn`` after one warm-up call (library dispatch, packing),
    on one thread (the other cores may be busy: one thread's ratios are what the choice needs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
            if best > slow_s:                                   # clearly slow: no need to repeat
                break
        return best
    finally:
        torch.set_num_threads(threads)


@lru_cache(maxsize=None)
def probe(device: str = "cpu") -> dict[str, float]:
    """Seconds of one (1024 x 256) @ (256 x 128) 0/1 product per candidate dtype on the CPU (best of
    five on one thread), measured once per process."""
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(1024, 256, generator=gen) > 0.5).float()
    b = (torch.rand(256, 128, generator=gen) > 0.5).float()
    times = {}
    for name, dt in _NAMES.items():
        x, w = a.to(device=device, dtype=dt), b.to(device=device, dtype=dt)
        times[name] = _best_time(lambda: x @ w)
    return times


def _ranked(device: str) -> list[torch.dtype]:
    """Candidate dtypes fastest first (float32 unless another beats it by MIN_GAIN)."""
    if torch.device(device).type == "cuda":
        return [torch.float16, torch.float32]
    t = probe(device)
    fast = [(t[n], dt) for n, dt in _NAMES.items() if dt != torch.float32 and t[n] * MIN_GAIN < t["float32"]]
    return [dt for _, dt in sorted(fast, key=lambda p: p[0])] + [torch.float32]


def bits_dtype(rows: int, device="cpu") -> torch.dtype:
    """The dtype of bit tensors for arrays of ``rows`` rows on ``device``: exact for every AND-count of
    such an array, and the fastest such dtype there (or the one ``COSIM_BITS_DTYPE`` forces)."""
    if rows < 1:
        raise InputError(f"rows must be positive, got {rows}")
    forced = forced_dtype()
    if forced is not None:
        return forced if exact_limit(forced) >= rows else torch.float32
    for dt in _ranked(_device_key(device)):
        if EXACT_LIMIT[dt] >= rows:
            return dt
    return torch.float32


def _onednn_linear():
    """torch's oneDNN float32 linear (y = x @ w_t.T), or None where this torch build lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


@lru_cache(maxsize=None)
def f32_probe() -> dict[str, float]:
    """Seconds of one (2048 x 64) @ (64 x 256) float32 product (the shape of a surrogate moment product)
    through each CPU kernel, best of five on one thread; a kernel whose result differs from torch.matmul by more than
    float32 rounding is left out."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(2048, 64, generator=gen) > 0.5).float()
    w = torch.randn(64, 256, generator=gen)
    ref = x @ w
    times = {}
    for name in F32_KERNELS:
        wt = prepare_f32(w, name)
        try:
            y = matmul_f32(x, w, wt, name)
        except RuntimeError:
            continue
        if not torch.allclose(y, ref, rtol=1e-5, atol=1e-4):
            continue
        times[name] = _best_time(lambda: matmul_f32(x, w, wt, name))
    return times


def f32_kernel(device="cpu") -> str:
    """``blas`` (torch.matmul) or ``onednn``: the faster float32 product kernel of ``device`` (the probe;
    oneDNN only where it beats BLAS by MIN_GAIN), or the one ``COSIM_F32_PRODUCT`` forces."""
    name = os.environ.get(F32_ENV, "auto").strip().lower() or "auto"
    if name not in F32_KERNELS + ("auto",):
        raise InputError(f"{F32_ENV}={name!r}: expected auto, {', '.join(F32_KERNELS)}")
    if torch.device(device).type != "cpu" or (name == "onednn" and _onednn_linear() is None):
        return "blas"
    if name != "auto":
        return name
    t = f32_probe()
    return "onednn" if "onednn" in t and t["onednn"] * MIN_GAIN < t.get("blas", float("inf")) else "blas"


def prepare_f32(w: torch.Tensor, kernel: str) -> torch.Tensor | None:
    """The layout ``kernel`` wants of a fixed right-hand float32 matrix ``w`` (K, N): its transpose,
    contiguous, for oneDNN; None (``w`` itself) for BLAS."""
    return w.t().contiguous() if kernel == "onednn" else None


def matmul_f32(x: torch.Tensor, w: torch.Tensor, w_t: torch.Tensor | None = None,
               kernel: str = "blas") -> torch.Tensor:
    """``x @ w`` in float32 through ``kernel`` (``w_t``: ``prepare_f32(w, kernel)``)."""
    if kernel == "onednn" and w_t is not None:
        return _onednn_linear()(x, w_t, None, "none", [], "")
    return x @ w


def int8_matmul(x: torch.Tensor, w_i8: torch.Tensor) -> torch.Tensor:
    """``x @ w`` (float32) of small integers (0/1 bits times +-1, 0) through an int8 product with int32 sums
    (``x`` any dtype holding integers in [-128, 127]; ``w_i8`` int8, contiguous): exact while every sum fits."""
    return torch._int_mm(x.to(torch.int8), w_i8).float()


@lru_cache(maxsize=None)
def int8_probe() -> dict[str, float]:
    """Seconds of one signed sum (2048 x 1024 bits) @ (1024 x 128 of +-1, 0), best of five on one thread: as
    products of the 64-row arrays' bit dtype grouped to stay exact (their partial results added in float32),
    and as an int8 product (the bits converted); the int8 product is left out where this torch lacks it
    or its result differs."""
    gen = torch.Generator().manual_seed(0)
    x32 = (torch.rand(2048, 1024, generator=gen) > 0.5).float()
    w32 = torch.randint(-1, 2, (1024, 128), generator=gen).float()
    dt = bits_dtype(64)
    x, w = x32.to(dt), w32.to(dt)
    group = exact_limit(dt) if dt != torch.float32 else 1024

    def grouped() -> torch.Tensor:
        acc = (x[:, :group] @ w[:group]).float()
        for t0 in range(group, 1024, group):
            acc.add_((x[:, t0:t0 + group] @ w[t0:t0 + group]).float())
        return acc
    times = {"grouped": _best_time(grouped)}
    w_i8 = w32.to(torch.int8).contiguous()
    try:
        ok = torch.equal(int8_matmul(x, w_i8), x32 @ w32)
    except (RuntimeError, AttributeError):
        ok = False
    if ok:
        times["int8"] = _best_time(lambda: int8_matmul(x, w_i8))
    return times


def int8_products(device="cpu") -> bool:
    """Whether signed sums of bit products run as int8 products (:func:`int8_matmul`) on ``device``: on CPUs
    where the probe finds them faster by MIN_GAIN, or as ``COSIM_INT8_PRODUCT`` forces (``on`` still needs
    a torch with the product)."""
    name = os.environ.get(INT8_ENV, "auto").strip().lower() or "auto"
    if name not in ("auto", "on", "off"):
        raise InputError(f"{INT8_ENV}={name!r}: expected auto, on, off")
    if name == "off" or torch.device(device).type != "cpu":
        return False
    t = int8_probe()
    if "int8" not in t:
        return False
    return name == "on" or t["int8"] * MIN_GAIN < t["grouped"]


def describe(rows: int, device="cpu") -> dict:
    """What :func:`bits_dtype` and :func:`f32_kernel` chose for ``rows`` on ``device`` and the evidence,
    for provenance."""
    out: dict = {"bits_dtype": str(bits_dtype(rows, device)).replace("torch.", ""), "device": _device_key(device),
           "forced": os.environ.get(ENV) or None, "f32_kernel": f32_kernel(device),
           "f32_forced": os.environ.get(F32_ENV) or None}
    if torch.device(device).type == "cpu":
        if forced_dtype() is None:
            out["probe_s"] = {k: round(v, 6) for k, v in probe(_device_key(device)).items()}
        out["f32_probe_s"] = {k: round(v, 6) for k, v in f32_probe().items()}
        out["int8_products"] = int8_products(device)
        out["int8_forced"] = os.environ.get(INT8_ENV) or None
        out["int8_probe_s"] = {k: round(v, 6) for k, v in int8_probe().items()}
        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return out
