"""`mmedge bench --plot`: (a) the time to first token as a stack of its stages per bundle, (b)
prefill and decode tokens/s per bundle, labelled by precision. matplotlib is optional (the
`bench` extra) and imported only here; the figure is drawn without pyplot, on the Agg canvas,
so no display and no global backend state are touched."""
from __future__ import annotations

import textwrap
from pathlib import Path

from mmedge.errors import BenchError, MissingDependencyError

# (stage key, legend) in pipeline order: their medians stack up to the time to first token.
STACK = (("preprocess_s", "preprocess"), ("plan_s", "plan"), ("encode_s", "encode"), ("project_s", "project"),
         ("assemble_s", "assemble"), ("prefill_s", "prefill"), ("first_sample_s", "first sample"))


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib, which is not installed; install the bench extra "
                                     "(pip install 'mmedge[bench]') or leave out --plot") from None


def _label(bundle: dict) -> str:
    precision = {p["role"]: p["precision"] for p in bundle["parts"]}
    encoder = next((v for k, v in precision.items() if k not in ("llm", "projector")), "?")
    # Wrapped: long bundle names ran into the neighbouring tick labels.
    name = "\n".join(textwrap.wrap(bundle["label"], 24, break_on_hyphens=True))
    return f"{name}\nLLM {precision.get('llm', '?')}, encoder {encoder}"


def write_plot(report: dict, path: str | Path) -> None:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bundles = report["bundles"]
    labels = [_label(b) for b in bundles]
    x = list(range(len(bundles)))
    fig = Figure(figsize=(max(9.0, 3.0 + 3.2 * len(bundles)), 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    stages, rates = fig.subplots(1, 2)

    bottom = [0.0] * len(bundles)
    for key, name in STACK:
        heights = [b["stages"][key]["median"] * 1e3 for b in bundles]
        stages.bar(x, heights, bottom=bottom, label=name, width=0.6)
        bottom = [a + h for a, h in zip(bottom, heights)]
    measured = [b["stages"]["ttft_s"]["median"] * 1e3 for b in bundles]
    stages.scatter(x, measured, marker="_", s=900, color="black", zorder=3, label="TTFT measured")
    stages.set_xticks(x, labels, fontsize=8)
    stages.set_ylabel("milliseconds (median)")
    stages.set_title("(a) time to first token by stage")
    # Beside the axes: inside, the legend covered the tallest bar.
    stages.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)

    width = 0.38
    top = 0.0
    for offset, key, name in ((-width / 2, "prefill_tokens_per_s", "prefill"), (width / 2, "decode_tokens_per_s", "decode")):
        values = [b["rates"][key]["median"] for b in bundles]
        top = max(top, *values)
        bars = rates.bar([i + offset for i in x], values, width=width, label=name)
        rates.bar_label(bars, fmt="%.0f", fontsize=7)
    rates.set_xticks(x, labels, fontsize=8)
    rates.set_ylabel("tokens / s (median)")
    rates.set_title("(b) prefill and decode rates")
    rates.set_ylim(0, top * 1.25 or 1.0)  # headroom: the legend and the bar labels above the bars
    rates.legend(fontsize=8, loc="upper center", ncol=2)

    m, s = report["machine"], report["settings"]
    fig.suptitle(f"mmedge bench: {m['cpu']}, {m['usable_cores']} cores; {s['reps']} runs per bundle, "
                 f"{s['max_tokens']} new tokens; {report['created']}", fontsize=10)
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise BenchError(f"--plot {path}: cannot write it ({e.strerror}); choose a path you may write") from None
