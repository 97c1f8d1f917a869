#!/usr/bin/env bash
# Renders the 14 networks with the project's generator, then loads each in real BVLC Caffe in both
# phases (tools/caffe_reference/check_generated_nets.py) and writes what Caffe saw to
# tests/fixtures/caffe_generated_nets.json, which tests/test_caffe_generated.py compares against.
# Needs real Caffe: ../shared/tools/build-reference-caffe.sh (default prefix /opt/reference-caffe).
# The generator runs with $PYTHON (default: <repo>/.venv/bin/python, else python3).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
caffe_python=${CAFFE_PYTHON:-/opt/reference-caffe/python}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3; [ -x "$repo/.venv/bin/python" ] && PYTHON=$repo/.venv/bin/python
fi
cd "$repo"
variants=$("$PYTHON" -c "from generator.variants import VARIANTS; print(' '.join(VARIANTS))") || {
  echo "check_generated_nets.sh: the generator does not run with $PYTHON: make the venv" \
       "(README, Set-up) or set PYTHON=/path/to/python" >&2; exit 1; }
PYTHONPATH=$caffe_python:tools/caffe_reference /usr/bin/python3 -m pycaffe_import 2>/dev/null || {
  echo "real Caffe not found at $caffe_python: build it with ../shared/tools/build-reference-caffe.sh" >&2; exit 1; }
nets=$(mktemp -d); trap 'rm -rf "$nets"' EXIT
for v in $variants; do
  "$PYTHON" -m generator.cli --variant "$v" -o "$nets/$v.prototxt" \
    --solver "$nets/${v}_solver.prototxt" 2>"$nets/log" || { cat "$nets/log" >&2; exit 1; }
done
${PYTHON:-python} -c "import json; from generator.variants import VARIANTS
print(json.dumps({n: v.input_size for n, v in VARIANTS.items()}))" > "$nets/input_sizes.json"
PYTHONPATH=$caffe_python /usr/bin/python3 tools/caffe_reference/check_generated_nets.py "$nets" \
  tests/fixtures/caffe_generated_nets.json
