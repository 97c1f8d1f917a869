"""matplotlib for the commands that draw figures (gen-prototxt --draw, replicate's report and
curves, visualize): files only, imported on first use, so nothing else pays for it."""


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
