"""The training-curve PNG: training loss over steps (left axis) and held-out accuracy per epoch (right axis)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

CURVE_NAME = "training-curve.png"


def plot_training_curve(
    history: list[dict], path: Path, title: str, best_epoch: Optional[int] = None,
    accuracy_label: str = "held-out accuracy",
) -> Path:
    """Write the curve of ``history`` (trainer epoch records) to ``path`` (temp file + rename); ``accuracy_label``
    names what the trainer's held-out accuracy measured (the distilled student: agreement with the teacher)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, loss_ax = plt.subplots(figsize=(7, 4))
    xs, ys = [], []
    for rec in history:
        points = rec.get("loss_curve") or [rec["train_loss"]]
        start = rec["epoch"] - 1
        xs += [start + (i + 1) / len(points) for i in range(len(points))]
        ys += points
    loss_ax.plot(xs, ys, color="tab:blue", label="training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss", color="tab:blue")
    held = [(rec["epoch"], rec["heldout_accuracy"]) for rec in history if rec.get("heldout_accuracy") is not None]
    if held:
        acc_ax = loss_ax.twinx()
        epochs, accs = zip(*held, strict=True)
        acc_ax.plot(epochs, accs, color="tab:orange", marker="o", label=accuracy_label)
        acc_ax.set_ylabel(accuracy_label, color="tab:orange")
        acc_ax.margins(y=0.2)  # room for the "best" label above the highest point
        if best_epoch:
            best = dict(held).get(best_epoch)
            if best is not None:
                acc_ax.annotate(
                    f"best {best:.2%}", (best_epoch, best), textcoords="offset points", xytext=(0, 8), ha="center"
                )
    loss_ax.set_title(title)
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
