#!/usr/bin/env bash
# Compile runtime/proto/caffe.proto into runtime/proto/caffe_descriptor.bin,
# a serialized google.protobuf.FileDescriptorSet holding one file, "caffe.proto".
# runtime/proto/__init__.py builds the message classes from it at import time,
# so no generated *_pb2.py (and no protoc/runtime version pairing) is needed.
#
# Needs grpcio-tools in the active Python (pip install grpcio-tools).
# Usage: tools/compile_proto.sh [OUTPUT]   (default: runtime/proto/caffe_descriptor.bin)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$root/runtime/proto"
out="${1:-$proto_dir/caffe_descriptor.bin}"
python="${PYTHON:-python}"

tmp="$(mktemp "${out}.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$python" -m grpc_tools.protoc -I "$proto_dir" --descriptor_set_out="$tmp" caffe.proto
chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "wrote $out"
