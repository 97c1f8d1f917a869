#!/usr/bin/env bash
# Builds a second reference Caffe like ../shared/tools/build-reference-caffe.sh, but with what
# that one leaves out: its database backends (LMDB and LevelDB), its Python layer and OpenCV
# (ImageData, WindowData, encoded Datum records), for the fixtures that need them
# (CAFFE_PREFIX=/opt/reference-caffe-full make_fixtures.sh --only data_lmdb data_leveldb python
# data_image data_window). It runs that script with them compiled in: the fork's CMake files
# ignore USE_LMDB, USE_LEVELDB, USE_OPENCV and BUILD_python_layer, so they are given as
# defines and libraries. Debian's OpenCV is 4.x, which dropped the C constants the fork's
# sources use (CV_LOAD_IMAGE_COLOR, ...): its legacy headers that define them are included
# first. That script's last check, `import caffe`, needs scikit-image, which pycaffe_import.py
# does without.
#
# Usage: build-reference-caffe-full.sh [PREFIX]      (default PREFIX=/opt/reference-caffe-full)
set -euo pipefail
PREFIX=${1:-/opt/reference-caffe-full}
shared=$(cd "$(dirname "$0")/../../.." && pwd)/shared/tools/build-reference-caffe.sh
[ -f "$shared" ] || { echo "build-reference-caffe-full.sh: $shared not found" >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends liblmdb-dev libleveldb-dev libsnappy-dev \
  libopencv-dev >/dev/null
defines="-DUSE_LMDB -DUSE_LEVELDB -DWITH_PYTHON_LAYER -DUSE_OPENCV -I\/usr\/include\/opencv4"
for legacy in imgcodecs/legacy/constants_c.h imgproc/imgproc_c.h videoio/legacy/constants_c.h; do
  defines="$defines -include opencv2\/${legacy//\//\\/}"
done
libraries="-llmdb -lleveldb -lopencv_core -lopencv_imgproc -lopencv_imgcodecs -lopencv_highgui"
libraries="$libraries -lopencv_videoio"
sed -e "s/\"-DCMAKE_CXX_FLAGS=/\"-DCMAKE_CXX_FLAGS=$defines /" \
    -e "s/-DUSE_LMDB=OFF/\"-DCMAKE_CXX_STANDARD_LIBRARIES=$libraries\"/" "$shared" \
  | bash -s "$PREFIX" || true
check='from pycaffe_import import import_caffe; types = import_caffe().layer_type_list()
assert {"Python", "ImageData", "WindowData"} <= set(types), types'
PYTHONPATH="$PREFIX/python:$(dirname "$0")" /usr/bin/python3 -c "$check" \
  && grep -q mdb_env_open "$PREFIX/python/caffe/_caffe.so" \
  && echo "reference Caffe with LMDB, LevelDB, the Python layer and OpenCV: CAFFE_PREFIX=$PREFIX"
