"""The prototxt reader at the edges of what it is given (text or path, binary files, V1
messages): from a mutation round over runtime/prototxt.py, each test killing a change the
other tests let live."""
from __future__ import annotations

import pytest

from runtime import prototxt
from runtime.errors import AllconvError
from runtime.proto import pb


def test_one_line_text_with_a_brace_and_no_spaces_is_read_as_text():
    """read_net takes a string as text when it looks like text: a brace is enough, as in
    'layer{name:"a"}' with no newline and no ': ' (as mutated: without the brace test it was taken
    for a path and refused as a missing file)."""
    net = prototxt.read_net('layer{name:"a" type:"ReLU"}')
    assert [(layer.name, layer.type) for layer in net.layer] == [("a", "ReLU")]


def test_a_file_of_one_control_byte_in_eleven_is_named_binary(tmp_path):
    """A prototxt of 880 bytes, 80 of them control bytes (9%, over the 5% that no text
    holds) that no Caffe message parses: named 'a binary file, perhaps ... cut short'
    (as mutated: a 20% threshold gave the text parser's error instead). One control byte in a text
    file is the parser's error at its position."""
    path = tmp_path / "net.prototxt"
    path.write_bytes(b'layer {\x01\x02 name: "a" }\n' * 40)
    with pytest.raises(AllconvError, match=r"a binary file, perhaps a \.caffemodel or "
                                           r"\.solverstate cut short, not a text NetParameter"):
        prototxt.read_net(path)
    path.write_bytes(b'layer { name: "x" }\n' * 60 + b"\x01")
    with pytest.raises(AllconvError, match=rf"^{path}:61:1: "):
        prototxt.read_net(path)


def test_read_net_of_a_message_without_upgrade_keeps_it_as_it_is():
    """read_net(message, upgrade=False) copies the message as it is: its V1 ``input`` /
    ``input_dim`` stay (as mutated: it was upgraded, to an Input layer, all the same); with the
    default upgrade they become the Input layer."""
    message = pb.NetParameter()
    message.input.append("data")
    message.input_dim.extend([1, 3, 4, 4])
    kept = prototxt.read_net(message, upgrade=False)
    assert list(kept.input) == ["data"] and list(kept.input_dim) == [1, 3, 4, 4]
    assert not kept.layer
    upgraded = prototxt.read_net(message)
    assert not upgraded.input and [layer.type for layer in upgraded.layer] == ["Input"]
    assert list(message.input) == ["data"]      # the caller's message is not changed
