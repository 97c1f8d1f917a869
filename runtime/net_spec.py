"""Nets written in Python, as pycaffe's ``caffe.net_spec``.

``layers.Convolution(bottom, kernel_size=3, num_output=96)`` stands for one layer and returns
its top; ``NetSpec`` names the tops assigned to it; ``to_proto`` gives the ``NetParameter``,
for ``Net`` or ``str()`` as prototxt. Names, the order of the layers and where each keyword
goes are pycaffe's:

- a keyword ending in ``param`` (``param``, ``transform_param``, ...) is a field of the layer;
- any other goes into the layer type's own parameter (``convolution_param`` for
  Convolution), else onto the layer itself (``include``, ``loss_weight``, ``name``);
- a dict is a message, a list a repeated field, and one value for a repeated field a list
  of one;
- ``ntop=N`` gives N tops (a tuple; with 0, the layer itself, for ``NetSpec`` to name),
  ``in_place=True`` writes the tops over the bottoms;
- a top not named in a ``NetSpec`` gets its type and a count: ``Convolution1``; a layer
  takes its first top's name.

A field no message has, or a value its field cannot take, is an error naming the layer and
the field, raised by ``to_proto`` where pycaffe raises, as an ``AllconvError`` that is also
the builtin exception pycaffe raises there (``AttributeError``, ``TypeError``, ...).
"""
from __future__ import annotations

from collections import Counter, OrderedDict

from runtime.errors import AllconvError
from runtime.proto import pb
from runtime.registry import did_you_mean


# Each error is also the builtin exception pycaffe raises there, so that code catching it
# catches these.
class NetSpecAttributeError(AllconvError, AttributeError):
    """A keyword no message has, a value of the wrong kind (a list for one value, a dict for
    a number), a NetSpec value that is no top."""


class NetSpecTypeError(AllconvError, TypeError):
    """A value of the wrong type for its field, a tuple, a layer input that is not a top."""


class NetSpecValueError(AllconvError, ValueError):
    """A value out of its field's range, an enum number caffe.proto lacks."""


class NetSpecIndexError(AllconvError, IndexError):
    """An empty list, which pycaffe's assignment cannot take."""


class NetSpecNoTop(AllconvError, AttributeError, KeyError):
    """A name no top of the NetSpec has: pycaffe's KeyError, and an AttributeError, so that
    ``hasattr``, ``getattr(n, name, default)``, ``copy`` and ``pickle`` work."""

    __str__ = BaseException.__str__         # KeyError's would quote the message


def _type_param_fields() -> dict[str, str]:
    """Layer type -> its parameter field, read from caffe.proto as pycaffe reads it: the
    field ``convolution_param`` holds a ``ConvolutionParameter``, so Convolution's keywords
    go there (Deconvolution, which shares that message under no name of its own, has none)."""
    fields = {}
    for field in pb.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            fields[field.message_type.name.removesuffix("Parameter")] = field.name
    return fields


_TYPE_PARAM_FIELDS = _type_param_fields()


class Top:
    """One output blob of a layer: the ``n``-th top of the layer ``fn``."""

    def __init__(self, fn: "Function", n: int):
        self.fn, self.n = fn, n

    def to_proto(self):
        """The NetParameter of every layer this top needs."""
        return to_proto(self)

    def _to_proto(self, layers, names, counts) -> None:
        self.fn._to_proto(layers, names, counts)


class Function:
    """One layer: its type, its input tops and its keywords."""

    def __init__(self, type_name: str, inputs, params: dict):
        for i, top in enumerate(inputs):
            if not isinstance(top, Top):
                raise NetSpecTypeError(
                    f"{type_name} input {i} is not a Top (type is {type(top).__name__})")
        self.type_name, self.inputs = type_name, tuple(inputs)
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        if not isinstance(self.ntop, int) or isinstance(self.ntop, bool):
            raise NetSpecTypeError(f"{type_name}: ntop must be an int, not {self.ntop!r}")
        self.in_place = self.params.pop("in_place", False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _name(self, names, counts) -> str:
        """Its name: the one given it, else its first top's, else its type and a count."""
        if self not in names:
            names[self] = (_top_name(self.tops[0], names, counts) if self.tops
                           else _counted(self.type_name, counts))
        return names[self]

    def _to_proto(self, layers, names, counts) -> None:
        """Add this layer's LayerParameter to ``layers``, after those of its inputs: depth
        first, in input order, as pycaffe's recursion, walked with a stack so that a chain of
        any length builds."""
        stack = [self]
        while stack:
            fn = stack[-1]
            waiting = [top.fn for top in fn.inputs if top.fn not in layers]
            if waiting:
                stack.append(waiting[0])
            else:
                stack.pop()
                if fn not in layers:
                    layers[fn] = fn._layer(layers, names, counts)

    def _layer(self, layers, names, counts):
        """This layer's LayerParameter, its inputs' already in ``layers``."""
        bottoms = []
        for top in self.inputs:
            made = layers[top.fn].top
            if top.n >= len(made):
                raise NetSpecIndexError(f"{top.fn.type_name} is in place over "
                                        f"{len(made)} bottom(s), so it has no top {top.n}")
            bottoms.append(made[top.n])
        layer = pb.LayerParameter(type=self.type_name, bottom=bottoms)
        layer.top.extend(bottoms if self.in_place
                         else [_top_name(top, names, counts) for top in self.tops])
        layer.name = self._name(names, counts)
        for key, value in self.params.items():
            _set_keyword(layer, self.type_name, key, value)
        return layer


def _counted(type_name: str, counts: Counter) -> str:
    counts[type_name] += 1
    return f"{type_name}{counts[type_name]}"


def _top_name(top: Top, names, counts) -> str:
    if top not in names:
        names[top] = _counted(top.fn.type_name, counts)
    return names[top]


def _set_keyword(layer, type_name: str, key: str, value) -> None:
    """One layer keyword, where pycaffe puts it (see the module's docstring)."""
    where = f"layer {layer.name} ({type_name})"
    field = _TYPE_PARAM_FIELDS.get(type_name)
    if field is not None and not key.endswith("param"):
        own = getattr(layer, field)
        if key in own.DESCRIPTOR.fields_by_name:
            _assign(f"{where}: {field}", own, key, value)
            return
    if key in layer.DESCRIPTOR.fields_by_name:
        _assign(where, layer, key, value)
        return
    known = list(layer.DESCRIPTOR.fields_by_name)
    if field is None:
        hint = (f"; {type_name} has no parameter field of its own, so its other keywords go"
                f" in a *_param=dict(...)")
    else:
        known += list(getattr(layer, field).DESCRIPTOR.fields_by_name)
        hint = ""
    raise NetSpecAttributeError(f"{where}: no field {key!r} in "
                                f"{field + ' or ' if field else ''}LayerParameter"
                                f"{did_you_mean(key, known)}{hint}")


def _assign(where: str, message, key: str, value) -> None:
    """``message.key = value``: dicts as messages, lists (or one value) as repeated fields;
    what pycaffe's assignment cannot take is refused with its exception's class."""
    fields = message.DESCRIPTOR.fields_by_name
    if not isinstance(key, str):
        raise NetSpecTypeError(f"{where}: a message's keys are field names, not {key!r}")
    if key not in fields:
        raise NetSpecAttributeError(f"{where}: no field {key!r} in {message.DESCRIPTOR.name}"
                                    f"{did_you_mean(key, fields)}")
    field, at = fields[key], f"{where}: {key}"
    kind = field.message_type.name if field.message_type else "number or string"
    if isinstance(value, tuple):        # pycaffe's class: a message field's is AttributeError
        single_message = field.message_type is not None and not field.is_repeated
        raise (NetSpecAttributeError if single_message else NetSpecTypeError)(
            f"{at} = {value!r}: give a list, not a tuple (as pycaffe)")
    if isinstance(value, list) and not value:
        raise NetSpecIndexError(f"{at} = []: pycaffe takes no empty list; leave {key} out")
    if isinstance(value, list) and not field.is_repeated:
        raise NetSpecAttributeError(f"{at} takes one value, not a list ({value!r})")
    if isinstance(value, dict) and field.message_type is None:
        if value or field.is_repeated:
            raise NetSpecAttributeError(f"{at} is a {kind}, not a message ({value!r})")
        return                                      # pycaffe sets nothing for {}
    values = value if isinstance(value, list) else [value]
    if field.message_type is not None:
        for i, item in enumerate(values):
            if not isinstance(item, dict):
                wrong = NetSpecTypeError if field.is_repeated and i == 0 else \
                    NetSpecAttributeError
                raise wrong(f"{at} is a {kind}: give it as a dict, not {item!r}")
            target = getattr(message, key).add() if field.is_repeated else getattr(message, key)
            for sub_key, sub_value in item.items():
                _assign(at, target, sub_key, sub_value)
        return
    try:
        if field.is_repeated:
            getattr(message, key).extend(values)
        else:
            setattr(message, key, value)
    except TypeError as bad:
        raise NetSpecTypeError(f"{at} = {value!r}: {bad}") from None
    except ValueError as bad:
        raise NetSpecValueError(f"{at} = {value!r}: {bad}") from None


def to_proto(*tops):
    """The NetParameter of every layer these tops need, its blobs named by type and count."""
    layers, counts = OrderedDict(), Counter()
    for top in tops:
        _to_proto_of(top, "to_proto argument", False)._to_proto(layers, {}, counts)
    return pb.NetParameter(layer=list(layers.values()))


def _to_proto_of(value, what: str, functions: bool):
    """``value``, which must be a top (or, named in a NetSpec, a layer of no tops)."""
    if not isinstance(value, (Top, Function) if functions else Top):
        hint = (" (a layer with ntop > 1 gives a tuple: unpack it, as `n.data, n.label = "
                "layers.Data(..., ntop=2)`)" if isinstance(value, tuple) else "")
        raise NetSpecAttributeError(f"{what} is a {type(value).__name__}, not a Top{hint}")
    return value


class NetSpec:
    """Tops named by assignment (``n.conv1 = layers.Convolution(n.data, ...)``, or
    ``n["conv1"] = ...``); ``to_proto`` gives the layers they need, in that order."""

    def __init__(self):
        object.__setattr__(self, "tops", OrderedDict())

    def __setattr__(self, name: str, value) -> None:
        self.tops[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]

    def __getattr__(self, name: str):
        tops = self.__dict__.get("tops", {})
        if name.startswith("__") or name not in tops:
            raise NetSpecNoTop(f"this NetSpec has no top {name!r}{did_you_mean(name, tops)}")
        return tops[name]

    def __setitem__(self, name: str, value) -> None:
        if not isinstance(name, str):
            raise NetSpecTypeError(f"a NetSpec names its tops with strings, not {name!r}")
        self.tops[name] = value

    def __getitem__(self, name: str):
        if name not in self.tops:
            raise NetSpecNoTop(f"this NetSpec has no top {name!r}"
                               f"{did_you_mean(str(name), self.tops)}")
        return self.tops[name]

    def __delitem__(self, name: str) -> None:
        self[name]                          # its error when missing
        del self.tops[name]

    def to_proto(self):
        """The NetParameter of the layers of every assigned top, named as assigned."""
        names = {value: name for name, value in self.tops.items()}
        layers, counts = OrderedDict(), Counter()
        for name, value in self.tops.items():
            _to_proto_of(value, f"NetSpec top {name!r}", True)._to_proto(layers, names, counts)
        return pb.NetParameter(layer=list(layers.values()))


class Layers:
    """``layers.TYPE(*bottoms, **keywords)``: a layer of any type, as pycaffe's ``layers``."""

    def __getattr__(self, type_name: str):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer(*bottoms, **keywords):
            fn = Function(type_name, bottoms, keywords)
            if fn.ntop == 1:
                return fn.tops[0]
            return fn if fn.ntop == 0 else fn.tops
        return layer


class Parameters:
    """``params.Pooling.MAX``: the enum values of caffe.proto's ``PoolingParameter``."""

    def __getattr__(self, type_name: str):
        if type_name.startswith("_"):
            raise AttributeError(type_name)
        message = getattr(pb, f"{type_name}Parameter", None)
        if message is None:
            known = [name.removesuffix("Parameter") for name in dir(pb)
                     if name.endswith("Parameter")]
            raise NetSpecAttributeError(f"caffe.proto has no {type_name}Parameter"
                                        f"{did_you_mean(type_name, known)}")
        return _Enums(message)


class _Enums:
    def __init__(self, message):
        self._message = message

    def __getattr__(self, value_name: str):
        descriptor = self._message.DESCRIPTOR
        values = [v.name for enum in descriptor.enum_types for v in enum.values]
        if not hasattr(self._message, value_name):
            raise NetSpecAttributeError(f"{descriptor.name} has no enum value {value_name!r}"
                                        f"{did_you_mean(value_name, values)}")
        return getattr(self._message, value_name)


layers = Layers()
params = Parameters()
