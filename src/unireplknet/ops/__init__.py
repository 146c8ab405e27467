"""Depthwise convolution: the one place every depthwise conv of the model is created and dispatched.

Every depthwise convolution in :mod:`unireplknet.model` is built by :func:`create_depthwise_conv2d`,
so a faster implementation slots in everywhere at once and the model's equivalence tests cover it.
The module it returns *is* an :class:`torch.nn.Conv2d` (same ``weight``/``bias`` keys, same
attributes such as ``padding``), so official checkpoints load unchanged and code that inspects
convolutions keeps working; only its ``forward`` goes through :func:`depthwise_conv2d`, which picks
the implementation per call.

Implementations (``impl=`` argument, :func:`set_default_impl`, or the environment variable
``UNIREPLKNET_DWCONV``; see docs/ops.md for the table of what runs where):

``"auto"`` (default)
    CPU float32/float64 → ``"cpu"``; CUDA → ``"triton"`` only where the measured table
    (:mod:`unireplknet.ops.gpu_table`) says Triton beats cuDNN for that GPU, dtype, layout and shape,
    else ``"torch"``; anything else → ``"torch"``.
``"torch"``
    plain :func:`torch.nn.functional.conv2d` (cuDNN / oneDNN), PyTorch's own backward.
``"cpu"``
    :mod:`unireplknet.ops.cpu`: forward in the layout fastest for the kernel size, input gradient and
    weight gradient as forward convolutions (the weight gradient 8–30× faster than PyTorch's).
``"triton"``
    :mod:`unireplknet.ops.triton_dwconv`: Triton kernels for forward, input and weight gradient.

The environment variable also takes exclusions: ``UNIREPLKNET_DWCONV=auto,-cpu`` runs the auto policy
without the ``cpu`` path. A forced implementation that cannot run a call falls back to the auto choice
with a one-time warning when forced by the environment or :func:`set_default_impl`, and raises a
ValueError when forced by the ``impl=`` argument.

While tracing, scripting, compiling or exporting (``torch.jit``, ``torch.compile``, ``torch.export``,
ONNX), and for tensor subclasses (fake / functional tensors of those tracers), the call is always the
plain ``F.conv2d``, so graphs contain one standard convolution node. (No ``from __future__ import
annotations`` here: TorchScript compiles :meth:`DepthwiseConv2d.forward` from this module's source.)
"""

import warnings
from typing import Dict, FrozenSet, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .._runtime import autocast_enabled, env_text, graph_recording
from .cpu import cpu_depthwise_conv2d, cpu_supports
from .cpu import is_channels_last as _is_channels_last
from .triton_dwconv import triton_depthwise_conv2d, triton_supports

__all__ = [
    "DepthwiseConv2d",
    "create_depthwise_conv2d",
    "crop_kernel_to_reach",
    "depthwise_conv2d",
    "select_implementation",
    "set_default_impl",
    "get_default_impl",
    "IMPLEMENTATIONS",
    "ENV_VAR",
]

#: Names accepted by ``impl=`` / ``UNIREPLKNET_DWCONV`` / :func:`set_default_impl`.
IMPLEMENTATIONS: Tuple[str, ...] = ("auto", "torch", "cpu", "triton")
#: The environment variable that selects the implementation (read on every call; parsing is cached).
ENV_VAR = "UNIREPLKNET_DWCONV"

_CONCRETE = ("torch", "cpu", "triton")
_default_impl: Optional[str] = None  # set_default_impl(); None → the environment variable → "auto"
_warned: set = set()


def _unknown(name: str, source: str) -> ValueError:
    return ValueError(
        f"unknown depthwise-conv implementation {name!r} ({source}); choose one of {', '.join(IMPLEMENTATIONS)}"
        " (the environment variable also accepts exclusions such as 'auto,-cpu')"
    )


_parsed_env: Dict[str, Tuple[str, FrozenSet[str]]] = {}


def _parse_env(value: str) -> Tuple[str, FrozenSet[str]]:
    """'triton' → ('triton', {}); 'auto,-cpu' or '-cpu' → ('auto', {'cpu'})."""
    cached = _parsed_env.get(value)
    if cached is not None:
        return cached
    choice, excluded = "auto", set()
    for part in (p.strip().lower() for p in value.split(",")):
        if not part:
            continue
        if part.startswith("-"):
            if part[1:] not in _CONCRETE:
                raise _unknown(part[1:], f"excluded in {ENV_VAR}={value!r}")
            excluded.add(part[1:])
        elif part in IMPLEMENTATIONS:
            choice = part
        else:
            raise _unknown(part, f"{ENV_VAR}={value!r}")
    result = (choice, frozenset(excluded))
    _parsed_env[value] = result
    return result


def set_default_impl(name: Optional[str]) -> None:
    """Force (or with ``None`` / ``"auto"`` un-force) the implementation for all later calls in this process.

    Takes precedence over the environment variable; an ``impl=`` argument takes precedence over both.
    """
    global _default_impl
    if name is not None and name not in IMPLEMENTATIONS:
        raise _unknown(name, "set_default_impl")
    _default_impl = None if name in (None, "auto") else name


def get_default_impl() -> str:
    """The process-wide choice: set_default_impl's, else the environment variable's, else 'auto'."""
    if _default_impl is not None:
        return _default_impl
    return _parse_env(env_text(ENV_VAR))[0]


def _auto(
    x: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int, excluded: FrozenSet[str]
) -> str:
    device = x.device.type
    if device == "cpu":
        # Under CPU autocast F.conv2d itself picks the compute dtype; leave that (and its backward) to PyTorch.
        if "cpu" not in excluded and cpu_supports(x, weight, padding, dilation) and not _cpu_autocast():
            return "cpu"
        return "torch"
    if device == "cuda" and "triton" not in excluded:
        from .gpu_table import measured_winner

        k = weight.shape[-1]
        if triton_supports(x, weight, padding, dilation) and (
            measured_winner(x, k, dilation, _is_channels_last(x)) == "triton"
        ):
            return "triton"
    return "torch"


def _cpu_autocast() -> bool:
    return autocast_enabled("cpu")


def _supports(name: str, x: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int) -> bool:
    if name == "torch":
        return True
    if name == "cpu":
        return cpu_supports(x, weight, padding, dilation) and not _cpu_autocast()
    return triton_supports(x, weight, padding, dilation)


def _graph_capture(x: torch.Tensor) -> bool:
    """True while a tracer / compiler / exporter is recording (they must see a plain F.conv2d)."""
    if type(x) is not torch.Tensor and type(x) is not nn.Parameter:
        return True  # FakeTensor / FunctionalTensor / proxies of torch.export, make_fx, …
    return graph_recording()


def select_implementation(
    x: torch.Tensor,
    weight: torch.Tensor,
    padding: int = 0,
    dilation: int = 1,
    impl: Optional[str] = None,
) -> str:
    """The implementation :func:`depthwise_conv2d` runs for these arguments ('torch', 'cpu' or 'triton').

    Raises ValueError when ``impl`` names an implementation that cannot run this call.
    """
    if _graph_capture(x):
        return "torch"
    excluded: FrozenSet[str] = frozenset()
    if impl is not None and impl != "auto":
        if impl not in _CONCRETE:
            raise _unknown(impl, "impl argument")
        if not _supports(impl, x, weight, padding, dilation):
            return impl  # the implementation itself raises the descriptive error
        return impl
    if impl is None:
        if _default_impl is not None:
            choice = _default_impl
        else:
            choice, excluded = _parse_env(env_text(ENV_VAR))
        if choice != "auto":
            if _supports(choice, x, weight, padding, dilation):
                return choice
            key = (choice, x.device.type, str(x.dtype))
            if key not in _warned:
                _warned.add(key)
                warnings.warn(
                    f"depthwise-conv implementation {choice!r} (forced by {ENV_VAR} or set_default_impl) cannot run "
                    f"a {x.dtype} tensor on {x.device} with kernel {tuple(weight.shape[-2:])}, padding {padding}, "
                    f"dilation {dilation}; using the automatic choice for such calls",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _auto(x, weight, padding, dilation, excluded)


def crop_kernel_to_reach(
    weight: torch.Tensor, padding: int, dilation: int, height: int, width: int
) -> Tuple[torch.Tensor, int]:
    """conv2d(x, W, pad=d·c) == conv2d(x, W[c−r:c+r+1, c−r:c+r+1], pad=d·r), r = ⌊(max(H, W)−1)/d⌋, for 'same' W.

    A tap ``r`` or more dilated steps from the centre reads only zero padding when ``d·r`` exceeds the map's
    larger side minus one, so it adds nothing to any output and gets a zero gradient: dropping it is exact.
    Small maps need this for speed, not correctness: a 13×13 kernel on the 1×1 to 4×4 maps of a 32-pixel input
    (the last stages on Fashion-MNIST, series images, forecasting grids) costs oneDNN 10-100× the cropped conv,
    forward and backward. Returns the (cropped) kernel and its 'same' padding; anything but a square, odd,
    'same'-padded kernel larger than the map is returned unchanged.
    """
    k = weight.shape[-1]
    centre = (k - 1) // 2
    if weight.shape[-2] != k or k % 2 == 0 or padding != centre * dilation:
        return weight, padding
    reach = (max(height, width) - 1) // dilation
    if reach >= centre:
        return weight, padding
    return weight[..., centre - reach:centre + reach + 1, centre - reach:centre + reach + 1], reach * dilation


def depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    padding: int = 0,
    dilation: int = 1,
    impl: Optional[str] = None,
) -> torch.Tensor:
    """Stride-1 depthwise 2-D convolution: ``conv2d(x, weight, bias, 1, padding, dilation, groups=C)``.

    Args:
        x: (N, C, H, W) input, NCHW or channels_last; the output has the same memory format.
        weight: (C, 1, K, K) kernel.
        bias: optional (C,) bias.
        padding, dilation: as for :func:`torch.nn.functional.conv2d` (one int for both sides).
        impl: ``None`` (process default: :func:`set_default_impl`, then ``UNIREPLKNET_DWCONV``, then
            ``"auto"``) or one of ``"auto"``, ``"torch"``, ``"cpu"``, ``"triton"`` (see module docs).
    """
    name = select_implementation(x, weight, padding, dilation, impl)
    if not _graph_capture(x):
        # Eager only: a recorded graph must hold the module's own kernel, valid for any input size.
        weight, padding = crop_kernel_to_reach(weight, padding, dilation, x.shape[-2], x.shape[-1])
    if name == "cpu":
        return cpu_depthwise_conv2d(x, weight, bias, padding, dilation)
    if name == "triton":
        return triton_depthwise_conv2d(x, weight, bias, padding, dilation)
    return F.conv2d(x, weight, bias, 1, padding, dilation, x.shape[1])


class DepthwiseConv2d(nn.Conv2d):
    """A stride-1 depthwise :class:`~torch.nn.Conv2d` whose forward dispatches to the fastest implementation.

    ``impl`` (attribute, default ``None`` = process default) forces an implementation for this module.
    """

    impl: Optional[str] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the choice of implementation is Python: a script holds the plain conv
            return F.conv2d(x, self.weight, self.bias, 1, self.padding[0], self.dilation[0], self.groups)
        else:
            return depthwise_conv2d(x, self.weight, self.bias, self.padding[0], self.dilation[0], self.impl)


def create_depthwise_conv2d(
    channels: int,
    kernel_size: int,
    dilation: int = 1,
    bias: bool = False,
    impl: Optional[str] = None,
    plain: bool = False,
) -> nn.Conv2d:
    """A depthwise ``kernel_size``×``kernel_size`` conv over ``channels`` with 'same' padding for odd kernels.

    ``impl`` forces an implementation for this module (``None``: the process default, see :func:`depthwise_conv2d`).
    ``plain=True`` returns an exact :class:`torch.nn.Conv2d` (its own forward is ``F.conv2d``) for a caller that
    dispatches through :func:`depthwise_conv2d` itself (the model does, in :func:`unireplknet.fast.depthwise`):
    tools that look modules up by exact type (thop, ptflops, mmcv's counter) then count it.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"depthwise kernel size must be a positive odd number, got {kernel_size}")
    if impl is not None and impl not in IMPLEMENTATIONS:
        raise _unknown(impl, "create_depthwise_conv2d")
    padding = (kernel_size - 1) * dilation // 2
    conv = (nn.Conv2d if plain else DepthwiseConv2d)(
        channels, channels, kernel_size, stride=1, padding=padding, dilation=dilation, groups=channels, bias=bias
    )
    if impl is not None:
        conv.impl = impl
    return conv
