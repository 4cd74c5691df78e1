"""
Figures of `trl-irl demo`, `trl-irl evaluate` and the benchmark sweeps, drawn with matplotlib (of the `demo` and
`evaluation` extras), each saved as PNG and SVG.
"""

from pathlib import Path


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            'Plots need matplotlib, of the `demo` and `evaluation` extras: pip install "trl-irl[evaluation]".'
        ) from error
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    path: str | Path,
    log_x: bool = False,
    title: str | None = None,
) -> list[Path]:
    """
    One line per entry of `series` (name -> (x, y) points), saved as `path` with the suffixes `.png` and `.svg`.
    Returns the two paths.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        axes.plot(xs, ys, marker="o" if len(points) <= 12 else None, markersize=4, label=name)
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    path = Path(path)
    paths = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for output in paths:
        figure.savefig(output, dpi=150)
    plt.close(figure)
    return paths


def metric_curves(results: dict, metric: str, path: str | Path) -> list[Path]:
    """`metric` of a `trl-irl demo` run against training steps, one line per method that records it."""
    series = {
        method: [(point["step"], point[metric]) for point in result["curve"] if metric in point]
        for method, result in results["methods"].items()
    }
    series = {method: points for method, points in series.items() if points}
    return line_chart(series, "training steps", metric, path)
