"""C's integer limits, where Caffe reads a number into an int or an unsigned int."""

INT_MIN, INT_MAX = -2**31, 2**31 - 1
# Caffe's batch sizes are unsigned ints, and it seeds its generator with one
# (Caffe::set_random_seed): a solver.prototxt with a larger random_seed would train another run
UINT32_MAX = 2**32 - 1
SEED_WHY = " (Caffe's seed is an unsigned int)"
