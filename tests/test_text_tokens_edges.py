"""From a mutation round: runtime/text_tokens.py corners tests/test_proto.py left open.
Real Caffe's messages printed by tools/caffe_reference/net_edges/unterminated.py (BVLC Caffe)."""
import pytest

from runtime.errors import AllconvError
from runtime.prototxt import parse_net


@pytest.mark.parametrize("text, where", [('name: "abc', "1:11"), ('name: "ab c', "1:12")])
def test_a_string_the_text_ends_in_is_reported_past_its_last_character(text, where):
    """Caffe: "Error parsing text-format caffe.NetParameter: 1:11: Unexpected end of string."."""
    with pytest.raises(AllconvError, match=f"^<string>:{where}: Unexpected end of string\\.$"):
        parse_net(text)


@pytest.mark.parametrize("escape", ["\\udc00", "\\udfff", "\\ud800"])
def test_a_lone_surrogate_escape_is_no_text(escape):
    """A \\u escape of a lone surrogate (high or low half) stands for no character."""
    with pytest.raises(AllconvError, match=f"^<string>:1:9: the escape \\{escape} is not UTF-8 "
                                           "text"):
        parse_net(f'name: "a{escape}"')


@pytest.mark.parametrize("text, where", [('name: "a"\x00', "1:10"), ('name: "a" \x00 ', "1:11")])
def test_a_nul_between_tokens_is_a_control_character(text, where):
    with pytest.raises(AllconvError, match=f"^<string>:{where}: Invalid control characters "
                                           "encountered in text"):
        parse_net(text)


def test_write_text_writes_text_unchanged_and_a_message_as_protobuf_prints_it(tmp_path):
    from runtime.proto import pb
    from runtime.prototxt import to_text, write_text
    path = tmp_path / "n.prototxt"
    write_text('name: "caf\u00e9"\nlayer {\n}\n', path)
    assert path.read_bytes() == 'name: "caf\u00e9"\nlayer {\n}\n'.encode("utf-8")
    write_text(pb.NetParameter(name="n", force_backward=True), path)
    assert path.read_bytes() == b'name: "n"\nforce_backward: true\n'
    assert to_text(pb.NetParameter(name="n")) == 'name: "n"\n'


# real Caffe: tools/caffe_reference/module_edges/misc_reference.py
@pytest.mark.parametrize("pair, char", [("\\udb80\\udc00", "\U000f0000"),
                                        ("\\uDBFF\\uDFFF", "\U0010ffff"),
                                        ("\\ud800\\udc00", "\U00010000")])
def test_a_surrogate_pair_of_any_high_half_is_its_code_point(pair, char):
    """C++'s tokenizer joins a head surrogate (D800 to DBFF) and the tail after it."""
    assert parse_net(f'name: "a{pair}b"').name == f"a{char}b"
