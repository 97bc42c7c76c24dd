"""Train a ReLU MLP on scikit-learn's bundled digits and save it as an npz network.

Usage (from the repository root)::

    python scripts/train_digits.py            # writes data/digits_mlp_64-32-32-10.npz
    python scripts/train_digits.py --out other.npz --max-iter 2000
    python scripts/train_digits.py --hidden 64,64 --out /tmp/digits_64-64-64-10.npz

``--hidden`` sets the hidden widths (default ``32,32``; the deep-network benchmark trains
64-64, 128-128, 256-256-256 and six layers of 32 this way, see ``benchmarks/deep_nets.py``).

Data: ``sklearn.datasets.load_digits`` (bundled with scikit-learn, no download), 8×8 images
scaled to [0, 1] by dividing by 16; 25 % test split with ``random_state=0``. Model:
``MLPClassifier(hidden_layer_sizes=(32, 32), activation="relu", random_state=0)``. The saved
network outputs the logits (the classifier's softmax is dropped: it does not change the
prediction). Extra npz keys: ``x0`` (the first test image), ``y0`` (its label),
``train_accuracy``, ``test_accuracy``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipopt.loaders import load_network, save_npz  # noqa: E402
from lipopt.network import Network  # noqa: E402

DEFAULT_OUT = ROOT / "data" / "digits_mlp_64-32-32-10.npz"


def train(
    max_iter: int = 1000, seed: int = 0, hidden: tuple[int, ...] = (32, 32)
) -> tuple[Network, dict[str, float]]:
    """Train the classifier; return the network (with ``x0``) and its accuracies."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), activation="relu", random_state=seed,
                        max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    net = Network.from_weights(
        [w.T for w in clf.coefs_],
        clf.intercepts_,
        activation="relu",
        name="digits_mlp_" + "-".join(str(w) for w in (64, *hidden, 10)),
        x0=x_te[0],
    )
    # the npz network must predict exactly what the classifier predicts
    assert np.array_equal(clf.classes_[net.forward(x_te).argmax(axis=1)], clf.predict(x_te))
    stats = {
        "train_accuracy": float(clf.score(x_tr, y_tr)),
        "test_accuracy": float(clf.score(x_te, y_te)),
        "n_iter": float(clf.n_iter_),
        "y0": float(y_te[0]),
    }
    return net, stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output npz path")
    parser.add_argument("--max-iter", type=int, default=1000, help="MLPClassifier max_iter")
    parser.add_argument("--seed", type=int, default=0, help="MLPClassifier random_state")
    parser.add_argument("--hidden", default="32,32", help="hidden widths, comma separated")
    args = parser.parse_args(argv)
    hidden = tuple(int(w) for w in args.hidden.split(","))
    net, stats = train(args.max_iter, args.seed, hidden)
    extra = {
        "train_accuracy": stats["train_accuracy"],
        "test_accuracy": stats["test_accuracy"],
        "y0": int(stats["y0"]),
    }
    path = save_npz(net, args.out, extra=extra)
    back = load_network(path)
    assert np.allclose(back.forward(net.x0), net.forward(net.x0), rtol=0, atol=1e-12)
    print(
        f"wrote {path} ({path.stat().st_size} bytes): train accuracy "
        f"{stats['train_accuracy']:.4f}, test accuracy {stats['test_accuracy']:.4f}, "
        f"{int(stats['n_iter'])} iterations"
    )


if __name__ == "__main__":
    main()
