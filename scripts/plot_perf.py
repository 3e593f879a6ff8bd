"""Charts for docs/performance.md from the benchmark results.

  python3 scripts/plot_perf.py [--compare target/bench/compare.json]
                               [--python target/bench/python-calls.json] [--out docs]

Writes
  OUT/perf-throughput.svg    Filter keys/s vs batch size: keyfilter rows, keyfilter packed,
                             Python peer (from scripts/bench-compare.sh)
  OUT/perf-python-calls.svg  per-call ns on each interpreter: generic matcher vs CPython's
                             lambda vs keyfilter's function (from scripts/bench-python.sh)

Needs matplotlib: when the running interpreter lacks it, the script creates the venv
.cache/bench-venv (pip install matplotlib) and runs itself again from there.
"""
import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".cache", "bench-venv")


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        sys.exit("matplotlib is missing from %s and could not be installed" % VENV)
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    subprocess.check_call([py, "-m", "pip", "install", "-q", "matplotlib"])
    os.execv(py, [py] + sys.argv)


def load_lines(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plot_throughput(rows, out):
    import matplotlib.pyplot as plt
    series = {}
    for r in rows:
        if r["mode"] != "filter":
            continue
        name = "%s (%s)" % (r["label"], "packed" if r["packed"] else "rows")
        series.setdefault(name, []).append((r["keys_per_request"], r["keys_per_s"]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"keyfilter (packed)": "o-", "keyfilter (rows)": "s-", "python-peer (rows)": "^--"}
    for name in sorted(series):
        pts = sorted(series[name])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], styles.get(name, "x-"), label=name)
        for x, y in pts:
            ax.annotate("%.2gM" % (y / 1e6), (x, y), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("keys per batch")
    ax.set_ylabel("keys/s (one Filter stream, loopback)")
    ax.set_title("Filter throughput vs batch size (3-field spec, 2-CPU machine)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def specs0(interps):
    return next(iter(interps[0]["specs"]))


def plot_python_calls(doc, out):
    import matplotlib.pyplot as plt
    interps = doc["interpreters"]
    specs = list(interps[0]["specs"])
    matchers = [("generic", "generic (KeyInfo + all())"), ("lambda", "CPython lambda"),
                ("keyfilter", "keyfilter (FunctionType)"), ("keyfilter_mf", "keyfilter (MAKE_FUNCTION)")]
    matchers = [m for m in matchers if m[0] in interps[0]["specs"][specs0(interps)]["call_ns"]]
    fig, axes = plt.subplots(1, len(specs), figsize=(4.2 * len(specs), 4.2), sharey=True)
    if len(specs) == 1:
        axes = [axes]
    width = 0.8 / len(matchers)
    for ax, spec in zip(axes, specs):
        xs = range(len(interps))
        for i, (key, label) in enumerate(matchers):
            vals = [d["specs"][spec]["call_ns"][key] for d in interps]
            offset = (i - (len(matchers) - 1) / 2) * width
            bars = ax.bar([x + offset for x in xs], vals, width, label=label)
            for b, v in zip(bars, vals):
                ax.annotate("%.0f" % v, (b.get_x() + b.get_width() / 2, v), textcoords="offset points",
                            xytext=(0, 2), ha="center", fontsize=6)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([d["python"] for d in interps])
        ax.set_yscale("log")
        ax.set_title("%s (%d predicates)" % (spec, interps[0]["specs"][spec]["predicates"]))
        ax.set_xlabel("CPython")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("ns per call (min of N, includes the loop)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Per-call time of a matcher, native interpreters")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", default=os.path.join(REPO, "target", "bench", "compare.json"))
    ap.add_argument("--python", default=os.path.join(REPO, "target", "bench", "python-calls.json"))
    ap.add_argument("--out", default=os.path.join(REPO, "docs"))
    args = ap.parse_args()
    ensure_matplotlib()
    import matplotlib
    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "keyfilter"  # stable ids: reruns give small diffs
    os.makedirs(args.out, exist_ok=True)
    done = []
    if os.path.exists(args.compare):
        path = os.path.join(args.out, "perf-throughput.svg")
        plot_throughput(load_lines(args.compare), path)
        done.append(path)
    if os.path.exists(args.python):
        with open(args.python) as fh:
            path = os.path.join(args.out, "perf-python-calls.svg")
            plot_python_calls(json.load(fh), path)
            done.append(path)
    if not done:
        sys.exit("no results found (run scripts/bench-compare.sh and scripts/bench-python.sh first)")
    print("\n".join(done))


if __name__ == "__main__":
    main()
