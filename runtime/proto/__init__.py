"""Caffe's protobuf messages, built at import time from ``caffe_descriptor.bin``.

``caffe_descriptor.bin`` is a serialized ``FileDescriptorSet`` compiled from
``caffe.proto`` by ``tools/compile_proto.sh``. Building classes from it (rather
than importing a generated ``caffe_pb2.py``) avoids the protoc-vs-runtime
version check of generated code, so any protobuf 4.x-7.x works.

Usage::

    from runtime.proto import pb
    net = pb.NetParameter()
    pb.TRAIN, pb.TEST                   # top-level Phase values
    pb.PoolingParameter.MAX             # nested enum values live on the class
    pb.Phase.Name(1)                    # -> "TEST"

``from runtime.proto.pb import NetParameter`` works as well.

The descriptors live in a private pool, so loading a real ``caffe_pb2`` in the
same process (e.g. pycaffe) does not clash with these.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper

DESCRIPTOR_PATH = Path(__file__).with_name("caffe_descriptor.bin")
PROTO_PATH = Path(__file__).with_name("caffe.proto")

__all__ = ["pb", "caffe_pb2", "pool", "DESCRIPTOR_PATH", "PROTO_PATH"]


def _message_class(desc):
    # GetMessageClass arrived in protobuf 4.22; older 4.x has only the factory.
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def _build() -> tuple[types.ModuleType, descriptor_pool.DescriptorPool]:
    file_set = descriptor_pb2.FileDescriptorSet()
    file_set.ParseFromString(DESCRIPTOR_PATH.read_bytes())
    private_pool = descriptor_pool.DescriptorPool()
    for file_proto in file_set.file:
        private_pool.Add(file_proto)

    ns = types.ModuleType(__name__ + ".pb", "Caffe messages (caffe_pb2 equivalent).")
    file_desc = private_pool.FindFileByName("caffe.proto")
    ns.DESCRIPTOR = file_desc
    for name, msg_desc in file_desc.message_types_by_name.items():
        setattr(ns, name, _message_class(msg_desc))
    for name, enum_desc in file_desc.enum_types_by_name.items():
        setattr(ns, name, enum_type_wrapper.EnumTypeWrapper(enum_desc))
        for value in enum_desc.values:
            setattr(ns, value.name, value.number)
    return ns, private_pool


pb, pool = _build()
sys.modules[pb.__name__] = pb
caffe_pb2 = pb      # pycaffe's name: ``caffe.proto.caffe_pb2``
