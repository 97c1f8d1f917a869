#!/usr/bin/env bash
# Builds a second reference Caffe like ../shared/tools/build-reference-caffe.sh, but with its
# database backends (LMDB and LevelDB) and its Python layer, for the Data layer's database
# fixtures and the Python layer's (CAFFE_PREFIX=/opt/reference-caffe-db make_fixtures.sh --only
# data_lmdb data_leveldb python). It runs that script with them compiled in: the fork's CMake
# files ignore USE_LMDB, USE_LEVELDB and BUILD_python_layer, so they are given as defines and
# libraries. That script's last check, `import caffe`, needs scikit-image, which
# pycaffe_import.py does without.
#
# Usage: build-reference-caffe-db.sh [PREFIX]      (default PREFIX=/opt/reference-caffe-db)
set -euo pipefail
PREFIX=${1:-/opt/reference-caffe-db}
shared=$(cd "$(dirname "$0")/../../.." && pwd)/shared/tools/build-reference-caffe.sh
[ -f "$shared" ] || { echo "build-reference-caffe-db.sh: $shared not found" >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends liblmdb-dev libleveldb-dev libsnappy-dev >/dev/null
sed -e 's/"-DCMAKE_CXX_FLAGS=/"-DCMAKE_CXX_FLAGS=-DUSE_LMDB -DUSE_LEVELDB -DWITH_PYTHON_LAYER /' \
    -e 's/-DUSE_LMDB=OFF/"-DCMAKE_CXX_STANDARD_LIBRARIES=-llmdb -lleveldb"/' "$shared" \
  | bash -s "$PREFIX" || true
PYTHONPATH="$PREFIX/python:$(dirname "$0")" /usr/bin/python3 -c \
  'from pycaffe_import import import_caffe; import_caffe()' \
  && grep -q mdb_env_open "$PREFIX/python/caffe/_caffe.so" \
  && PYTHONPATH="$PREFIX/python:$(dirname "$0")" /usr/bin/python3 -c \
  'from pycaffe_import import import_caffe; assert "Python" in import_caffe().layer_type_list()' \
  && echo "reference Caffe with LMDB, LevelDB and the Python layer: CAFFE_PREFIX=$PREFIX"
