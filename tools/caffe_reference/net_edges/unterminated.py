"""Real Caffe's message for a prototxt whose last string is not closed (read via caffe.Net), for
tests/test_text_tokens_edges.py."""
import subprocess
import sys
import tempfile
texts = {"eof": 'name: "abc', "eof_after_blank": 'name: "ab c'}
for key, text in texts.items():
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    code = ("from pycaffe_import import import_caffe; caffe = import_caffe(); "
            f"caffe.Net({f.name!r}, caffe.TEST)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(key, repr(text), [line for line in p.stderr.splitlines() if "rror" in line][:2])
