"""Dropout (dropout_layer.cpp): at TRAIN keep with probability 1−p and scale by 1/(1−p);
at TEST pass through. The phase is the layer's Caffe phase, not ``Module.training``."""
from __future__ import annotations

import math

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.proto import pb

_M32 = 0xFFFFFFFF


def _mix32(x):
    """A 32-bit integer hash (two xorshift-multiply rounds; a bijection of [0, 2**32)) of a
    Python int or of an int64 tensor holding such values (the products stay below 2**59)."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def seed_key(seed: int) -> int:
    """The 32-bit key of a 64-bit seed, which `keyed_uniform` takes."""
    return _mix32(_mix32(seed & _M32) ^ ((seed >> 32) & _M32))


def keyed_uniform(key, iteration, start: int, shape, device) -> torch.Tensor:
    """Uniform [0, 1) float32 noise of ``shape`` for rows ``start``… of a batch, a function of
    (a seed's ``key`` (`seed_key`), ``iteration``, each element's index in the whole batch)
    alone: a counter-based generator, so the same in eager mode, compiled and inside a
    captured CUDA graph, for any split of the batch over processes, and with no state to save.
    ``key`` and ``iteration`` may be device tensors (int64): a CUDA graph reads them at each
    replay, and a compiled graph takes them as inputs, so nets of other seeds share it. 24
    random bits per value; each element's bits are the hash of its index xor a key of
    (seed, iteration)."""
    if isinstance(iteration, torch.Tensor):
        iteration = iteration.to(torch.int64) & _M32
    else:
        iteration = int(iteration) & _M32
    step = _mix32(iteration ^ key)
    per_row = math.prod(shape[1:])
    first, last = start * per_row, (start + shape[0]) * per_row
    bits = torch.arange(first, last, dtype=torch.int64, device=device)
    if last > _M32:             # indices past 32 bits fold their high part in
        bits = (bits & _M32) ^ _mix32(bits >> 32)
    bits ^= step
    bits = _mix32(bits) >> 8
    return (bits.to(torch.float32) * 2.0 ** -24).reshape(shape)


@register("Dropout")
class Dropout(Layer):
    """Masks come from a per-device generator seeded from the net's generator, so a seeded
    net drops the same units every run; or, once a training loop keys them (`key_masks`),
    from `keyed_uniform` of the seed and the iteration, the same eager, compiled and in a
    CUDA graph. Unkeyed, under torch.compile and while a CUDA graph is being captured, the
    device's default generator is used instead (compiled graphs cannot take generator
    objects; the default CUDA generator is the one a captured graph advances at every replay).

    ``seeds`` holds one seed, drawn at build time. A packed net (runtime/pack.py) gives the
    layer one seed per member (`set_member_seeds`): member k's block of channels
    [k·C/K, (k+1)·C/K) then draws its noise of shape (N, C/K, ...) from generators of its own
    seed, so its masks are its solo net's, bit for bit, in eager mode. Keyed masks read the
    seeds' keys from the buffer ``seed_keys``, so one compiled graph serves nets of any seed."""

    @property
    def repeatable_forward(self) -> bool:
        """In TRAIN its forward draws its masks anew."""
        return self.phase != pb.TRAIN

    backward_ignores_input = True

    def setup(self, bottom_shapes, generator):
        # Caffe only DCHECKs 0 < ratio < 1; training CHECKs the keep probability 1 - ratio
        # (caffe_rng_bernoulli). Ratio 0 keeps all; ratio 1 keeps none, times an inf scale.
        self.ratio = self.param.dropout_param.dropout_ratio
        if self.phase == pb.TRAIN and not 0 <= self.ratio <= 1:
            raise AllconvError(f"dropout_param.dropout_ratio must be in [0, 1] to train (Caffe's "
                               f"keep probability 1 - ratio), got {self.ratio:g}")
        self.scale = 1.0 / (1.0 - self.ratio) if self.ratio != 1 else math.inf
        self.seeds = (int(torch.randint(2**62, (), generator=generator,
                                        device=generator.device)),)
        # the seeds' keys as a tensor, moved with the net: compiled, an input rather than a
        # constant (a net of another seed reuses the graph); not saved with the weights
        self.register_buffer("seed_keys", torch.tensor([seed_key(self.seeds[0])]),
                             persistent=False)
        self._generators = {}
        self._key = None

    def set_member_seeds(self, seeds) -> None:
        """Draw the masks of K members, member k with ``seeds[k]`` (its solo layer's seed);
        the channel axis (1) must split into K blocks. Generators restart from the seeds.
        Before any capture or compiling: ``seed_keys`` becomes a new tensor."""
        seeds = tuple(int(s) for s in seeds)
        shape = self.top_shapes[0]
        if not seeds or (len(seeds) > 1 and (len(shape) < 2 or shape[1] % len(seeds))):
            raise AllconvError(f"{len(seeds)} member seeds do not split the channels of "
                               f"shape {shape} into equal blocks")
        self.seeds, self._generators = seeds, {}
        self.seed_keys = torch.tensor([seed_key(s) for s in seeds], device=self.seed_keys.device)

    def _generator(self, member: int, device) -> torch.Generator:
        key = (member, torch.device(device))
        if key not in self._generators:
            self._generators[key] = torch.Generator(device).manual_seed(self.seeds[member])
        return self._generators[key]

    def key_masks(self, iteration, offset: int, global_batch: int) -> None:
        """Draw every later mask from (seed, ``iteration``) alone (`keyed_uniform`), as rows
        ``offset``… of a ``global_batch``: a sample's mask then depends on its position in the
        global batch, not on how many processes share the batch, nor on any generator's
        history, so a resumed run needs no saved state. ``iteration``: an int, or a 0-d device
        tensor the caller advances (a training loop's step counter; a CUDA graph reads it)."""
        self._key = (iteration, int(offset), int(global_batch))

    def _member_noise(self, member: int, shape, like) -> torch.Tensor:
        if self._key is None:
            return torch.rand(shape, dtype=like.dtype, device=like.device,
                              generator=self._generator(member, like.device))
        iteration, offset, _ = self._key
        return keyed_uniform(self.seed_keys[member], iteration, offset, shape, like.device)

    def _noise(self, x):
        members = self.seed_keys.shape[0]
        if members == 1:
            return self._member_noise(0, x.shape, x)
        block = (x.shape[0], x.shape[1] // members, *x.shape[2:])
        return torch.cat([self._member_noise(k, block, x) for k in range(members)], 1)

    def _member(self, member: int | None) -> int:
        if member is None:
            if len(self.seeds) > 1:
                raise AllconvError(f"layer {self.name!r} is packed: its random state is per "
                                   f"member; give member 0 to {len(self.seeds) - 1}")
            return 0
        if not 0 <= member < len(self.seeds):
            raise AllconvError(f"layer {self.name!r} has no member {member} "
                               f"({len(self.seeds)} member(s))")
        return member

    def rng_state(self, member: int | None = None) -> dict[str, torch.Tensor]:
        """{device: generator state} of the mask generators made so far (of ``member``, for
        a packed layer: the form of its solo layer's state)."""
        member = self._member(member)
        return {str(device): g.get_state() for (k, device), g in self._generators.items()
                if k == member}

    def set_rng_state(self, states: dict[str, torch.Tensor], member: int | None = None) -> None:
        """Restore `rng_state` (a solo layer's state restores a member of a pack, and back)."""
        member = self._member(member)
        for device, state in states.items():
            if torch.device(device).type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"layer {self.name!r} holds the state of a {device} generator "
                                 "and this machine has no CUDA: resume the run on CUDA")
            self._generator(member, device).set_state(state)

    def forward(self, x):
        if self.phase != pb.TRAIN:
            return (x,)
        if self._key is None and (torch.compiler.is_compiling() or (
                x.is_cuda and torch.cuda.is_current_stream_capturing())):
            noise = torch.rand(x.shape, dtype=x.dtype, device=x.device)
        else:
            noise = self._noise(x)
        return (x * (noise >= self.ratio) * self.scale,)
