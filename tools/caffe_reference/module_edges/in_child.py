"""Run a pycaffe snippet on one case in a child process (a Caffe CHECK aborts the process) and
print the case's name, what the child printed (or that it aborted) and Caffe's failed CHECK."""
import os
import subprocess
import sys


def run_case(name: str, child: str, argument: str) -> None:
    """``child``: Python code that reads ``argument`` as sys.argv[1]; it finds pycaffe on the
    PYTHONPATH this script runs with."""
    p = subprocess.run([sys.executable, "-c", child, argument], capture_output=True, text=True,
                       env={"GLOG_minloglevel": "0", "PATH": "/usr/bin",
                            "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    line = [l for l in p.stderr.splitlines() if "Check failed" in l or l[:1] == "F"]
    print(name, "->", p.stdout.strip() or f"aborted (rc {p.returncode})", "|",
          line[0][line[0].find("]") + 1:] if line else p.stderr.strip()[-150:])
