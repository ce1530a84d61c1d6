"""Fixtures for the class read-out (src/analysis/readout): scikit-learn's train_test_split, DINO's
weighted k-NN (facebookresearch/dino eval_knn.py, knn_classifier) and scikit-learn's
LogisticRegression, on seeded random features.

    python tools/make_readout_fixtures.py   # writes tests/fixtures/readout/
Needs numpy, torch and scikit-learn.
"""
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "readout"


def splits():
    cases = []
    for n, test_size, seed in [(10, 0.3, 42), (100, 0.25, 0), (1797, 0.3, 42), (9543, 0.3, 42)]:
        train, test = train_test_split(np.arange(n), test_size=test_size, random_state=seed)
        cases.append({"samples": n, "test_size": test_size, "seed": seed,
                      "train": train.tolist(), "test": test.tolist()})
    return cases


def knn_classifier(train_features, train_labels, test_features, k, T, num_classes):
    # eval_knn.py's knn_classifier, one chunk, features already normalised as main() does.
    train_features = torch.nn.functional.normalize(train_features, dim=1, p=2).t()
    features = torch.nn.functional.normalize(test_features, dim=1, p=2)
    batch_size = features.shape[0]
    similarity = torch.mm(features, train_features)
    distances, indices = similarity.topk(k, largest=True, sorted=True)
    candidates = train_labels.view(1, -1).expand(batch_size, -1)
    retrieved_neighbors = torch.gather(candidates, 1, indices)
    retrieval_one_hot = torch.zeros(batch_size * k, num_classes)
    retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
    distances_transform = distances.clone().div_(T).exp_()
    probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes),
                                distances_transform.view(batch_size, -1, 1)), 1)
    _, predictions = probs.sort(1, True)
    return probs, predictions[:, 0]


def knn():
    rng = np.random.default_rng(7)
    classes, dim = 5, 16
    centres = rng.normal(size=(classes, dim))
    def draw(n):
        labels = rng.integers(0, classes, size=n)
        return (centres[labels] + 1.2 * rng.normal(size=(n, dim))).astype(np.float32), labels
    train, train_labels = draw(300)
    test, test_labels = draw(120)
    cases = []
    for k, T in [(20, 0.07), (5, 0.5), (1, 0.07)]:
        probs, predictions = knn_classifier(torch.from_numpy(train), torch.from_numpy(train_labels),
                                            torch.from_numpy(test), k, T, classes)
        cases.append({"k": k, "temperature": T, "scores": probs.numpy().ravel().tolist(),
                      "predictions": predictions.tolist()})
    return {"dim": dim, "classes": classes, "train": train.ravel().tolist(),
            "train_labels": train_labels.tolist(), "test": test.ravel().tolist(),
            "test_labels": test_labels.tolist(), "cases": cases}


def logistic(data):
    from sklearn.linear_model import LogisticRegression
    dim = data["dim"]
    train = np.array(data["train"], dtype=np.float32).reshape(-1, dim)
    test = np.array(data["test"], dtype=np.float32).reshape(-1, dim)
    cases = []
    for C in [1.0, 0.1]:
        model = LogisticRegression(C=C).fit(train, data["train_labels"])  # scikit-learn's defaults
        # The same problem solved to the optimum: the default tol=1e-4 stops L-BFGS before it, and
        # float32 features keep scikit-learn's coefficients and gradient in float32.
        optimum = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(
            train.astype(np.float64), data["train_labels"])
        cases.append({"C": C, "n_iter": int(model.n_iter_[0]),
                      "proba": model.predict_proba(test).ravel().tolist(),
                      "proba_optimum": optimum.predict_proba(test.astype(np.float64)).ravel().tolist(),
                      "predictions": model.predict(test).tolist(),
                      "accuracy": float(model.score(test, data["test_labels"]))})
    return cases


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "split.json").write_text(json.dumps(splits()))
    data = knn()
    data["logistic"] = logistic(data)
    (OUT / "knn.json").write_text(json.dumps(data))
    digits()
    print(f"wrote {OUT}")


def digits():
    """scikit-learn's bundled handwritten digits (UCI, 1,797 images of 8 x 8, 10 classes) as one
    grayscale atlas PNG (40 images a row) and their labels, for the folder-to-accuracy test."""
    from PIL import Image
    from sklearn.datasets import load_digits
    data = load_digits()
    images = (data.images * (255.0 / 16.0)).round().astype(np.uint8)
    per_row = 40
    rows = (len(images) + per_row - 1) // per_row
    atlas = np.zeros((rows * 8, per_row * 8), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, per_row)
        atlas[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = image
    Image.fromarray(atlas).save(OUT / "digits.png", optimize=True)
    (OUT / "digits.json").write_text(json.dumps({
        "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
        "licence": "CC BY 4.0 (UCI Machine Learning Repository; Alpaydin & Kaynak 1998), as shipped "
                   "with scikit-learn (BSD-3-Clause)",
        "count": len(images), "per_row": per_row, "side": 8, "labels": data.target.tolist()}))


if __name__ == "__main__":
    main()
