"""RecurrentLayer (recurrent_layer.cpp): the base of RNN and LSTM, which Caffe unrolls into a
net over the T timesteps of its input.

Bottoms: x (T × N × …), cont (T × N; 0 starts a new sequence: the previous state is
multiplied by cont_t), an optional static input x_static (N × …) added to every step, and with
``expose_hidden`` the initial states (1 × N × num_output each, after x_static). Tops: the
output (T × N × num_output) and, with ``expose_hidden``, the final states.

Without ``expose_hidden`` each forward starts from the previous forward's final state, as
Caffe copies h_T into h_0: the first N × num_output values of h_T's buffer, which keeps its
memory when N shrinks (the first N rows of the last final state, then older rows when N
grows back) and is zeros again when N passes its largest size so far. As in Caffe, no
gradient flows into the initial states, out of the exposed final states, or to cont; x and
x_static get one. Whenever the layer runs backward, Caffe's unrolled net computes the diffs
of x, x_static and every learnable blob, an lr_mult of 0 or a bottom that needs no diff
notwithstanding (they count in clip_gradients' norm).
"""
from __future__ import annotations


import torch

from runtime.errors import AllconvError
from runtime.layers import Layer
from runtime.layers.shapes import count


class Recurrent(Layer):
    repeatable_forward = False      # its hidden state carries over to the next forward
    """Subclasses name their states (``states``, Caffe's recurrent input order), create the
    learnable blobs (``add_blobs``) and compute the unrolled net (``unroll``)."""

    states: tuple[str, ...] = ()
    kept_from_force_backward, no_backward_to = (1,), {1: "sequence indicators"}

    @property
    def diffs_whenever_run(self) -> tuple[int, ...]:
        return (0, 2) if self.has_static else (0,)

    @property
    def exposed(self) -> int:
        """How many state bottoms and tops ``expose_hidden`` adds."""
        return len(self.states) * self.param.recurrent_param.expose_hidden

    @property
    def batch_axes(self) -> tuple[list[int], list[int]]:
        """The axis of each bottom and top that holds the streams N (for ONNX export): 1, but
        0 in x_static."""
        return [1, 1] + [0] * self.has_static + [1] * self.exposed, [1] * (1 + self.exposed)

    @property
    def num_bottoms(self):
        return (2 + self.exposed, 3 + self.exposed)

    @property
    def num_tops(self):
        return (1 + self.exposed, 1 + self.exposed)

    def setup(self, bottom_shapes, generator):
        recurrent = self.param.recurrent_param
        x = bottom_shapes[0]
        if len(x) < 3:   # Caffe checks 2, then its InnerProduct on axis 2 needs a third
            raise AllconvError(f"bottom 0 (x) has shape {x}; it needs at least 3 axes "
                               "(timesteps T, streams N, values ...)")
        if recurrent.num_output <= 0:
            raise AllconvError("recurrent_param.num_output must be positive")
        self.warn_without_weight_filler(recurrent)
        self.timesteps, self.hidden = x[0], recurrent.num_output
        self.has_static = len(bottom_shapes) == 3 + self.exposed
        static = bottom_shapes[2] if self.has_static else None
        if static is not None and len(static) < 2:
            raise AllconvError(f"bottom 2 (x_static) has shape {static}; it needs at least 2 "
                               "axes (streams N, values ...)")
        self.add_blobs(count(x, 2), count(static, 1) if static else 0, recurrent, generator)
        for name in self.states:
            self.register_buffer(f"carry_{name}", torch.zeros(0), persistent=False)

    def reshape(self, bottom_shapes):
        x, cont = bottom_shapes[:2]
        if len(x) < 3 or x[0] != self.timesteps:
            raise AllconvError(f"bottom 0 (x) has shape {x}; the number of timesteps was "
                               f"{self.timesteps} at setup and cannot change")
        steps, streams = x[:2]
        if cont != (steps, streams):
            raise AllconvError(f"bottom 1 (cont) has shape {cont}; it must be T × N = "
                               f"{(steps, streams)} like x's first two axes")
        if count(x, 2) != self.input_size(0):
            raise AllconvError(f"bottom 0 (x) has {count(x, 2)} values per step and stream; "
                               f"the weights take {self.input_size(0)}")
        state = (1, streams, self.hidden)
        if self.has_static:
            static = bottom_shapes[2]
            if static[0] != streams or count(static, 1) != self.input_size(2):
                raise AllconvError(f"bottom 2 (x_static) has shape {static}; it must hold "
                                   f"{self.input_size(2)} values for each of the {streams} "
                                   "streams")
        for index, shape in enumerate(bottom_shapes[2 + self.has_static:], 2 + self.has_static):
            if shape != state:
                raise AllconvError(f"bottom {index} (an initial state) has shape {shape}; "
                                   f"it must be 1 × N × num_output = {state}")
        self.state_count = streams * self.hidden
        if not self.exposed:
            for name in self.states:
                self._buffer_for(name, self.state_count)
        return [(steps, streams, self.hidden)] + [state] * self.exposed

    def input_size(self, index: int) -> int:
        """Values per stream that the weights of blob ``index`` take."""
        return self.blobs[index].shape[1]

    def forward(self, x, cont, *rest):
        steps, streams = x.shape[:2]
        static = rest[0].reshape(streams, count(rest[0].shape, 1)) if self.has_static else None
        if self.exposed:
            states = [s.detach().reshape(streams, self.hidden) for s in rest[self.has_static:]]
        else:
            states = [self._buffer_for(name, streams * self.hidden)[:streams * self.hidden]
                      .reshape(streams, self.hidden).to(x.dtype) for name in self.states]
        output, finals = self.unroll(x.reshape(steps, streams, count(x.shape, 2)), cont.detach(),
                                     static,
                                     states)
        finals = [f.detach().unsqueeze(0) for f in finals]
        if self.exposed:
            return (output, *finals)
        for name, final in zip(self.states, finals):
            self._write_head(name, final.reshape(-1))
        return (output,)

    def _buffer_for(self, name: str, size: int) -> torch.Tensor:
        """The state's flat buffer (Caffe's h_T blob), holding at least ``size`` values: a
        larger size than any before allocates anew, zeros (Blob::Reshape past its capacity)."""
        buffer = getattr(self, f"carry_{name}")
        if buffer.numel() < size:
            buffer = buffer.new_zeros(size)
            setattr(self, f"carry_{name}", buffer)
        return buffer

    def _write_head(self, name: str, values: torch.Tensor) -> None:
        """The state's buffer with ``values`` first and its older values after them."""
        buffer = self._buffer_for(name, values.numel())
        setattr(self, f"carry_{name}", torch.cat([values.to(buffer.dtype),
                                                  buffer[values.numel():]]))

    def reset(self) -> None:
        """Caffe's RecurrentLayer::Reset: the states' first N × num_output values, those the
        next forward at this N starts from, become zeros."""
        for name in self.states:
            self._write_head(name, getattr(self, f"carry_{name}").new_zeros(self.state_count))

    def add_blobs(self, input_size, static_size, recurrent, generator) -> None:
        raise NotImplementedError

    def unroll(self, x, cont, static, states):
        """(output T × N × num_output, final states N × num_output) from x (T × N × K),
        cont (T × N), x_static (N × K_s or None) and the initial states (N × num_output)."""
        raise NotImplementedError
