"""Hand-written forward and backward for chains of ``nn.Linear`` layers and elementwise activations.

Any ModuleFamily target (``target=sequential`` included) whose module is an ``nn.Sequential`` of
Linear layers, each followed by zero or more elementwise activations (ReLU, tanh, sigmoid, GELU,
ELU, LeakyReLU, SiLU, Softplus, Identity, eval-mode Dropout), is trained here instead of by the
generic ``module`` kernel (autograd over ``vmap(functional_call)``), which spends most of its time
on autograd's bookkeeping, vmap's batching rules and temporaries rather than on the matrix products.
For a chunk of ``c`` stacked, zero-padded targets and ``h_0 = x`` ``[c, m, i]``, per step::

    z_l  = h_{l-1} W_lᵀ + b_l          bmm, then the bias in place (addcmul when i_l = 1: one rounding,
                                       as the BLAS's k=1 GEMM; a [c, 1, m] dot when the width is 1)
    h_l  = act_l(z_l)                  in place where the backward only needs the result
    g    = dL/dh_D                     the task's own loss gradient (closed-form MSE, else autograd on outputs)
    g    = act_l'(g)                   the very ``aten::*_backward`` ops autograd calls, written over g
    dW_l = gᵀ h_{l-1},  db_l = Σ_m g   into contiguous buffers, then copied into the flat gradient
    g    = g W_l                       (skipped for the first layer)

Every operand of a batched GEMM is a plain or transposed contiguous batch: torch's CPU ``bmm``
falls back to one GEMM call per target when its ``out=`` is a strided view (measured 2-10x slower
for these shapes). Every ``[c, m, width]`` tensor lives in a buffer allocated once per sample count. Padded entries:
with ``f(0) = 0`` their gradients are exactly zero already (a padded unit's input weights are
zero, so its activation is 0 and its outgoing column is zero); activations with ``f(0) != 0``
(sigmoid, softplus) feed padded outgoing weights, so their gradients are multiplied by the
prefix-box mask, as the ``module`` kernel does for every network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from hyperpred.targets.base import TargetFamily
from hyperpred.targets.module_family import ModuleFamily
from hyperpred.targets.sequential import SequentialFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.kernels.base import Kernel, output_grad_
from hyperpred.zoo.spec import TrainRecipe

_A = torch.ops.aten


@dataclass(frozen=True)
class Activation:
    """An elementwise activation as autograd computes it: forward, and backward from its input or result."""

    forward: Callable[[Tensor, Tensor], object]  # (z, out): out = f(z); out may be z itself
    backward: Callable[[Tensor, Tensor], object]  # (g, saved): g = g · f'(.), written over g
    needs_input: bool  # backward reads f's input z (else its result f(z))
    zero_at_zero: bool  # f(0) == 0: padded units stay silent without a mask


def _activation(layer: nn.Module) -> Activation | None:
    """The :class:`Activation` of a supported layer, or None."""
    t = type(layer)
    if t in (nn.Identity, nn.Dropout):  # the family runs modules in eval mode: dropout is the identity
        return Activation(lambda z, o: None if o is z else o.copy_(z), lambda g, s: None, False, True)
    if t is nn.ReLU:
        return Activation(
            lambda z, o: torch.clamp_min(z, 0, out=o),
            lambda g, h: _A.threshold_backward.grad_input(g, h, 0, grad_input=g),
            False,
            True,
        )
    if t is nn.Tanh:
        return Activation(
            lambda z, o: torch.tanh(z, out=o), lambda g, h: _A.tanh_backward.grad_input(g, h, grad_input=g), False, True
        )
    if t is nn.Sigmoid:
        return Activation(
            lambda z, o: torch.sigmoid(z, out=o),
            lambda g, h: _A.sigmoid_backward.grad_input(g, h, grad_input=g),
            False,
            False,
        )
    if t is nn.GELU:
        a = layer.approximate
        return Activation(
            lambda z, o: _A.gelu.out(z, approximate=a, out=o),
            lambda g, z: _A.gelu_backward.grad_input(g, z, approximate=a, grad_input=g),
            True,
            True,
        )
    if t is nn.ELU:
        alpha = float(layer.alpha)
        return Activation(
            lambda z, o: _A.elu.out(z, alpha, 1, 1, out=o),
            lambda g, z: _A.elu_backward.grad_input(g, alpha, 1, 1, False, z, grad_input=g),
            True,
            True,
        )
    if t is nn.LeakyReLU:
        slope = float(layer.negative_slope)
        return Activation(
            lambda z, o: _A.leaky_relu.out(z, slope, out=o),
            lambda g, z: _A.leaky_relu_backward.grad_input(g, z, slope, False, grad_input=g),
            True,
            True,
        )
    if t is nn.SiLU:
        return Activation(
            lambda z, o: _A.silu.out(z, out=o), lambda g, z: _A.silu_backward.grad_input(g, z, grad_input=g), True, True
        )
    if t is nn.Softplus:
        beta, threshold = float(layer.beta), float(layer.threshold)
        return Activation(
            lambda z, o: _A.softplus.out(z, beta, threshold, out=o),
            lambda g, z: _A.softplus_backward.grad_input(g, z, beta, threshold, grad_input=g),
            True,
            False,
        )
    return None


@dataclass
class ChainLayer:
    """One Linear layer of a chain, where its parameters sit in the flat vector, and its activations."""

    fan_in: int
    width: int
    weight: int  # offset of the weight [width, fan_in] in the flat parameters
    bias: int | None  # offset of the bias [width], None without one
    acts: list[Activation] = field(default_factory=list)


def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The layers a plain ``nn.Sequential`` runs, in order (nested Sequentials opened), or None."""
    if type(module).forward is not nn.Sequential.forward:
        return None
    children = list(module.named_children())
    if len(children) != len(module):  # one module at two places: named_children lists it once
        return None
    out: list[tuple[str, nn.Module]] = []
    for name, child in children:
        if isinstance(child, nn.Sequential):
            inner = _leaves(child)
            if inner is None:
                return None
            out += [(f"{name}.{n}", m) for n, m in inner]
        else:
            out.append((name, child))
    return out


def linear_chain(family: TargetFamily, container: Sequence[int]) -> list[ChainLayer] | None:
    """The container module as a chain of Linear layers with activations, or None when it is not one."""
    if not isinstance(family, ModuleFamily) or len(family.input_shape(container)) != 1:
        return None
    try:
        leaves = _leaves(family.meta_module(container))
    except (RuntimeError, ValueError, TypeError):
        return None
    if not leaves:
        return None
    offsets, start = {}, 0
    for name, shape in family.param_shapes(container).items():
        offsets[name] = start
        start += int(torch.Size(shape).numel())
    layers: list[ChainLayer] = []
    for name, layer in leaves:
        if type(layer) is nn.Linear:
            names = [f"{name}.weight"] + ([f"{name}.bias"] if layer.bias is not None else [])
            if any(n not in offsets for n in names):  # a parameter tied to another layer's
                return None
            bias = offsets[names[1]] if layer.bias is not None else None
            layers.append(ChainLayer(layer.in_features, layer.out_features, offsets[names[0]], bias))
            continue
        act = _activation(layer)
        if act is None or not layers or any(True for _ in layer.parameters()):
            return None  # another layer, or an activation before the first Linear
        layers[-1].acts.append(act)
    covered = sum(a.width * (a.fan_in + (a.bias is not None)) for a in layers)
    return layers if layers and covered == start else None  # every parameter is some layer's


class ChainKernel(Kernel):
    """Closed-form gradients of Linear/activation chains with batched matrix products."""

    name = "chain"
    #: About 100 targets of the 1-40-40-1 MLP per chunk: the buffers of one builder thread (~15 MB) then
    #: stay in the last-level cache next to the other thread's, where a 512-target chunk (~80 MB) would not.
    chunk_bytes = 16 * 2**20

    def __init__(
        self,
        family: TargetFamily,
        task: Task,
        archs: Tensor,
        container: Sequence[int],
        x: Tensor,
        y: Tensor,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(family, task, archs, container, x, y, batch_size)
        chain = linear_chain(family, container)
        if chain is None:
            raise ValueError(f"{family.name} {tuple(container)} is not a chain of Linear layers and activations")
        self.layers = chain
        needs_mask = not all(a.zero_at_zero for layer in chain for a in layer.acts)
        self.mask = family.flat_mask(archs, container).to(x.dtype) if needs_mask else None
        self._buffers: dict[int, tuple[list[list[Tensor]], list[Tensor], Tensor]] = {}
        c = x.shape[0]
        self.dw = [x.new_empty(c, 1, a.width) if a.fan_in == 1 else x.new_empty(c, a.width, a.fan_in) for a in chain]

    @classmethod
    def supports(
        cls,
        family: TargetFamily,
        task: Task,
        recipe: TrainRecipe,
        device: torch.device,
        container: Sequence[int] | None = None,
    ) -> bool:
        if container is None and isinstance(family, SequentialFamily):
            container = (1,) * len(family.arch_fields)  # its layer kinds do not depend on the widths
        return container is not None and linear_chain(family, container) is not None

    @classmethod
    def bytes_per_target(cls, family: TargetFamily, container: Sequence[int], n: int) -> int:
        chain = linear_chain(family, container) or []
        widths = sum(layer.width * (1 + len(layer.acts)) + layer.fan_in for layer in chain)
        return 4 * n * (widths + chain[-1].width if chain else 0) + 32 * family.num_params(container)

    def _bufs(self, m: int) -> tuple[list[list[Tensor]], list[Tensor], Tensor]:
        """For steps of ``m`` samples, per layer: its outputs (z, then one per out-of-place activation) and the
        gradient of its input; and a spare output for the loss gradient."""
        if m not in self._buffers:
            c = self.x.shape[0]
            new = lambda *shape: torch.empty(shape, dtype=self.x.dtype, device=self.x.device)  # noqa: E731
            stages, gins = [], []
            for layer in self.layers:
                stage, prev_result = [new(c, m, layer.width)], False
                for act in layer.acts:  # in place unless its input must survive for a backward
                    stage.append(new(c, m, layer.width) if act.needs_input or prev_result else stage[-1])
                    prev_result = not act.needs_input
                stages.append(stage)
                gins.append(new(c, m, layer.fan_in))
            self._buffers[m] = (stages, gins, new(c, m, self.layers[-1].width))
        return self._buffers[m]

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        x, y = self.batch(rows)
        stages, gins, spare = self._bufs(x.shape[1])
        c = params.shape[0]

        def weight(layer: ChainLayer, flat: Tensor) -> Tensor:  # [c, width, fan_in], a view of the flat tensor
            return flat[:, layer.weight : layer.weight + layer.width * layer.fan_in].view(c, layer.width, layer.fan_in)

        def bias(layer: ChainLayer, flat: Tensor) -> Tensor:  # [c, width]
            return flat[:, layer.bias : layer.bias + layer.width]

        h = x
        for layer, stage in zip(self.layers, stages):  # forward
            w, z = weight(layer, params), stage[0]
            if layer.fan_in == 1 and layer.bias is not None:  # an outer product plus the bias: one fused op
                torch.addcmul(bias(layer, params).unsqueeze(1), h, w.transpose(1, 2), out=z)
            else:
                if layer.width == 1:  # one dot per sample; [c, 1, m] has the memory of [c, m, 1]
                    torch.bmm(w, h.transpose(1, 2), out=z.view(c, 1, -1))
                else:
                    torch.bmm(h, w.transpose(1, 2), out=z)
                if layer.bias is not None:
                    z.add_(bias(layer, params).unsqueeze(1))
            for act, src, dst in zip(layer.acts, stage, stage[1:]):
                act.forward(src, dst)
            h = stage[-1]
        if self.layers[-1].acts:  # the loss gradient is written over its input; the backward still needs h_D
            h = spare.copy_(h)
        g = output_grad_(self.task, h, y, self.out_mask)
        for i in range(len(self.layers) - 1, -1, -1):  # backward
            layer, stage = self.layers[i], stages[i]
            for j in range(len(layer.acts) - 1, -1, -1):
                act = layer.acts[j]
                act.backward(g, stage[j] if act.needs_input else stage[j + 1])
            below, dw = (x if i == 0 else stages[i - 1][-1]), weight(layer, out)
            # into a buffer: a GEMM whose out= is a strided view of the flat gradient loops over the targets
            if layer.fan_in == 1:  # [c, 1, width] is the memory of [c, width, 1]
                dw.view(c, 1, layer.width).copy_(torch.bmm(below.transpose(1, 2), g, out=self.dw[i]))
            else:
                dw.copy_(torch.bmm(g.transpose(1, 2), below, out=self.dw[i]))
            if layer.bias is not None:
                torch.sum(g, 1, out=bias(layer, out))
            if i > 0:
                w = weight(layer, params)
                g = torch.mul(g, w, out=gins[i]) if layer.width == 1 else torch.bmm(g, w, out=gins[i])
        if self.mask is not None:
            out.mul_(self.mask)
