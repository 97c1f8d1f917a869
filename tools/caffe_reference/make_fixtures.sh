#!/usr/bin/env bash
# Regenerate tests/fixtures/ from real BVLC Caffe (CPU, pycaffe).
#
#   tools/caffe_reference/make_fixtures.sh [--only SUBSTRING ...]
#
# --only: the cases whose names hold a SUBSTRING; the words text, net_spec and io pick the
# three files below instead (--only text io: those two alone).
#
# Step 1 (the project's venv): render the generated networks and write a .caffemodel with the
#         runtime's Net.save (for the runtime -> Caffe round trip) into a temp dir.
# Step 2 (Debian's /usr/bin/python3 + pycaffe): run every case in Caffe, write
#         tests/fixtures/<case>.npz and tests/fixtures/caffe_saved_small.caffemodel; and
#         (all cases, or --only text) tests/fixtures/text_format_cases.json, how Caffe reads
#         prototxt text (make_text_cases.py); and (all cases, or --only net_spec)
#         tests/fixtures/net_spec_cases.json, what pycaffe's net_spec makes of
#         tests/fixtures/net_spec/builders.py (make_net_spec_cases.py); and (all cases, or
#         --only io) tests/fixtures/pycaffe_io_cases.npz, what pycaffe's caffe.io makes
#         (make_io_cases.py).
# Then: pytest tests/test_caffe_fixtures.py
#
# Needs Caffe built into $CAFFE_PREFIX (default /opt/reference-caffe); if it is missing:
#   sudo bash ../shared/tools/build-reference-caffe.sh   (from the checkout: apt, then the build;
#   about 10-15 minutes on 2 cores)
# or any BVLC Caffe with pycaffe for /usr/bin/python3: CAFFE_PREFIX=/path/to/caffe (the
# folder holding python/caffe). The venv is $VENV (default <repo>/.venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
CAFFE_PREFIX=${CAFFE_PREFIX:-/opt/reference-caffe}
VENV=${VENV:-$repo/.venv}
CAFFE_PYTHON=${CAFFE_PYTHON:-/usr/bin/python3}
out=$repo/tests/fixtures

caffe_env=(env "PYTHONPATH=$CAFFE_PREFIX/python:$repo/tools/caffe_reference" GLOG_minloglevel=2)
if ! "${caffe_env[@]}" "$CAFFE_PYTHON" -m pycaffe_import 2>/dev/null; then
  # the data_lmdb, data_leveldb, python, data_image and data_window cases need the full build
  build=$repo/../shared/tools/build-reference-caffe.sh
  case " $* " in *" data_lmdb "*|*" data_leveldb "*|*" python "*|*" data_image "*|*" data_window "*)
    build=$repo/tools/caffe_reference/build-reference-caffe-full.sh;;
  esac
  cat >&2 <<MSG
make_fixtures.sh: pycaffe is not importable from $CAFFE_PREFIX/python with $CAFFE_PYTHON.
Build the reference Caffe first (CPU only, about 10-15 minutes on 2 cores; as root or with
sudo, as it installs Debian packages):
    bash $build $CAFFE_PREFIX
then run this script again (or set CAFFE_PREFIX to another Caffe checkout with pycaffe built).
MSG
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "make_fixtures.sh: no venv at $VENV (set VENV=...)" >&2; exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/allconv_fixtures.XXXXXX")
trap 'rm -rf "$work"' EXIT
# the LMDB and LevelDB data cases write their databases with the lmdb and plyvel packages
"$CAFFE_PYTHON" -m pip install -q --target "$work/pylib" lmdb plyvel >/dev/null 2>&1 \
  || echo "make_fixtures.sh: could not install lmdb and plyvel; the database cases are skipped"
caffe_env=(env "PYTHONPATH=$CAFFE_PREFIX/python:$repo/tools/caffe_reference:$work/pylib:$repo/tests/fixtures/python_layers"
           GLOG_minloglevel=2)
cd "$repo"
# --only's words text, net_spec and io pick those files; the others pick layer cases by name
cases=()
if [ $# -gt 0 ] && [ "$1" = --only ]; then
  shift
  for word in "$@"; do
    case $word in text|net_spec|io) ;; *) cases+=("$word") ;; esac
  done
  set -- --only "$@"
fi
if [ $# -eq 0 ] || [ ${#cases[@]} -gt 0 ]; then
  only=(); [ ${#cases[@]} -eq 0 ] || only=(--only "${cases[@]}")
  "$VENV/bin/python" tools/caffe_reference/make_fixtures.py venv "$work" "${only[@]}"
  "${caffe_env[@]}" "$CAFFE_PYTHON" tools/caffe_reference/make_fixtures.py caffe "$work" "$out" \
      "${only[@]}"
fi
if [ $# -eq 0 ] || [[ " $* " == *" text "* ]]; then    # how Caffe reads prototxt text
  "${caffe_env[@]}" "$CAFFE_PYTHON" tools/caffe_reference/make_text_cases.py \
      "$out/text_format_cases.json" > /dev/null
fi
if [ $# -eq 0 ] || [[ " $* " == *" net_spec "* ]]; then  # what pycaffe's net_spec makes
  "${caffe_env[@]}" "$CAFFE_PYTHON" tools/caffe_reference/make_net_spec_cases.py \
      "$out/net_spec_cases.json" > /dev/null
fi
if [ $# -eq 0 ] || [[ " $* " == *" io "* ]]; then        # what pycaffe's caffe.io makes
  "${caffe_env[@]}" "$CAFFE_PYTHON" tools/caffe_reference/make_io_cases.py \
      "$out/pycaffe_io_cases.npz" > /dev/null
fi
du -sh "$out"
