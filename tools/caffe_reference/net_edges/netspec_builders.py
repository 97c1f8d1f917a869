"""NetSpec cases run through real pycaffe (netspec_reference.py) and allconv alike."""


def two_fresh_inputs(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    n.y = L.Eltwise(L.ReLU(n.x), L.TanH(n.x))
    return n.to_proto()


def three_fresh_inputs_to_proto(L, P, NetSpec, to_proto):
    x = L.Input(shape=dict(dim=[1, 2]))
    return to_proto(L.Concat(L.Sigmoid(x), L.ReLU(x), L.TanH(L.AbsVal(x))))


def ntop_true(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    n.y = L.ReLU(n.x, ntop=True)
    return n.to_proto()


def empty_dict_for_repeated_number(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output=2, kernel_size={})
    return n.to_proto()


def empty_dict_for_one_number(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output={}, kernel_size=1)
    return n.to_proto()


def second_item_not_a_dict(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output=2, kernel_size=1, param=[dict(lr_mult=1), 3])
    return n.to_proto()


def first_item_not_a_dict(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output=2, kernel_size=1, param=[3, dict(lr_mult=1)])
    return n.to_proto()


def silence_named_in_netspec(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    n.quiet = L.Silence(n.x, ntop=0)
    return n.to_proto()


def two_tops_of_one_layer_to_proto(L, P, NetSpec, to_proto):
    a, b = L.Input(shape=[dict(dim=[1, 2]), dict(dim=[1, 2])], ntop=2)
    return to_proto(L.ReLU(b), L.TanH(a))


def in_place_pair(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.a, n.b = L.Input(shape=[dict(dim=[1, 2]), dict(dim=[1, 2])], ntop=2)
    n.c, n.d = L.Python(n.a, n.b, ntop=2, in_place=True,
                        python_param=dict(module="m", layer="l"))
    n.e = L.Eltwise(n.c, n.d)
    return n.to_proto()


CASES = [two_fresh_inputs, three_fresh_inputs_to_proto, ntop_true, empty_dict_for_repeated_number,
         empty_dict_for_one_number, second_item_not_a_dict, first_item_not_a_dict,
         silence_named_in_netspec, two_tops_of_one_layer_to_proto, in_place_pair]


def in_place_over_two_bottoms_one_top(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.a, n.b = L.Input(shape=[dict(dim=[1, 2]), dict(dim=[1, 2])], ntop=2)
    n.c = L.Eltwise(n.a, n.b, in_place=True)
    return n.to_proto()


def tuple_for_a_message(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output=2, kernel_size=1, weight_filler=(1,))
    return n.to_proto()


def tuple_for_a_repeated_message(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output=2, kernel_size=1, param=(dict(lr_mult=1),))
    return n.to_proto()


def tuple_for_one_number(L, P, NetSpec, to_proto):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output=(2,), kernel_size=1)
    return n.to_proto()


CASES += [in_place_over_two_bottoms_one_top, tuple_for_a_message, tuple_for_a_repeated_message,
          tuple_for_one_number]
