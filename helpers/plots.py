"""Training curves from `trainer.state.log_history` (a list of dicts, one per logging step).

Compute (`loss_history`, `metric_history`) is separate from drawing (`plot_loss`, `plot_dpo_metrics`).

>>> loss_history([{"loss": 2.0, "step": 1}, {"eval_loss": 1.9, "step": 1}, {"loss": 1.5, "step": 2}])
[(1, 2.0), (2, 1.5)]
"""

from __future__ import annotations

DPO_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def shown_name(name: str, profile: str) -> str:
    """The model's name as plot titles and printed headers show it: in the tiny profile it says so,
    so nobody mistakes a stand-in's curve for the real model's.

    >>> shown_name("Llama 2 7B Chat", "tiny"), shown_name("Llama 2 7B Chat", "full")
    ('Llama 2 7B Chat (tiny stand-in)', 'Llama 2 7B Chat')
    """
    return f"{name} (tiny stand-in)" if profile == "tiny" else name


def metric_history(log_history: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) for every log entry that has `key`, values as floats."""
    return [(int(h["step"]), float(h[key])) for h in log_history if key in h and "step" in h]


def loss_history(log_history: list[dict]) -> list[tuple[int, float]]:
    """(step, training loss) pairs."""
    return metric_history(log_history, "loss")


def loss_fell(log_history: list[dict], window: int = 5, min_drop: float = 0.05) -> bool:
    """True when the mean of the last `window` losses is below the first `window`'s by `min_drop` (relative).

    >>> loss_fell([{"loss": 3.0 - 0.1 * i, "step": i} for i in range(20)])
    True
    >>> loss_fell([{"loss": 2.0, "step": i} for i in range(20)])           # flat
    False
    >>> loss_fell([{"loss": 2.0 + 0.1 * i, "step": i} for i in range(20)])  # rising
    False
    >>> loss_fell([{"loss": 2.0, "step": i} for i in range(3)])
    Traceback (most recent call last):
    ...
    ValueError: need at least 10 logged losses, got 3; log more often
    """
    losses = [v for _, v in loss_history(log_history)]
    if len(losses) < 2 * window:
        raise ValueError(f"need at least {2 * window} logged losses, got {len(losses)}; log more often")
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    return last < first * (1 - min_drop)


def plot_loss(log_history: list[dict], title: str = "Training loss", ax=None):
    """Line plot of training (and, if logged, evaluation) loss against step; returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.5))
    for key, label in (("loss", "train"), ("eval_loss", "eval")):
        points = metric_history(log_history, key)
        if points:
            ax.plot(*zip(*points), marker="." if key == "loss" else "o", label=label)
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_dpo_metrics(log_history: list[dict], title: str = "DPO rewards"):
    """Two panels: implicit rewards of chosen/rejected and their margin; reward accuracy. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in DPO_METRICS[:3]:
        points = metric_history(log_history, key)
        if points:
            left.plot(*zip(*points), marker=".", label=key.split("/")[1])
    left.axhline(0, color="grey", lw=0.5)
    left.set(xlabel="step", ylabel="β · log-ratio", title=title)
    left.legend()
    points = metric_history(log_history, DPO_METRICS[3])
    if points:
        right.plot(*zip(*points), marker=".", color="tab:green")
    right.set(xlabel="step", ylabel="accuracy", ylim=(-0.05, 1.05), title="chosen reward > rejected reward")
    fig.tight_layout()
    return fig
