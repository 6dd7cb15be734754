"""Plots plan wall time, CPU time and peak RSS against inventory size (scale.sh's CSV)."""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(csv_path: str, png_path: str) -> None:
    rows = list(csv.DictReader(open(csv_path)))
    images = [int(r["images"]) for r in rows]
    fig, (time_ax, mem_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    time_ax.plot(images, [float(r["wall_s"]) for r in rows], "o-", label="wall")
    time_ax.plot(images, [float(r["cpu_s"]) for r in rows], "s--", label="CPU (user + sys)")
    time_ax.set(xscale="log", yscale="log", xlabel="images in the inventory", ylabel="seconds",
                title="amiwarden plan: time (median)")
    time_ax.grid(True, which="both", alpha=0.3)
    time_ax.legend()
    mem_ax.plot(images, [float(r["peak_rss_mib"]) for r in rows], "o-", color="tab:red")
    mem_ax.set(xscale="log", yscale="log", xlabel="images in the inventory", ylabel="MiB",
               title="amiwarden plan: peak RSS (median)")
    mem_ax.grid(True, which="both", alpha=0.3)
    for ax, key in ((time_ax, "wall_s"), (mem_ax, "peak_rss_mib")):
        for r in rows:
            ax.annotate(f'{float(r[key]):g}', (int(r["images"]), float(r[key])), textcoords="offset points",
                        xytext=(4, -12), fontsize=8)
    fig.suptitle("stock plugins, default limits, release build, 2-core VM")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
