"""Fixtures for the embedding maps (src/analysis/embedding_map): scikit-learn's PCA(2) and exact
t-SNE (sklearn/manifold/_t_sne.py) on small seeded Gaussian clusters.

    python tools/make_embedding_map_fixtures.py   # writes tests/fixtures/embedding_map/
Needs numpy and scikit-learn (written with 1.9.1).

The points are float32, as the crate's descriptors; scikit-learn gets them as float64 (the same
values), so its PCA, which also gives t-SNE's initialisation, is computed in float64 like ours.
Per case: <case>_x.npy (float32 points), <case>_pca.npy (PCA(2).fit_transform), <case>_p.npy
(_joint_probabilities as a square matrix, float64), <case>_tsne.npy (TSNE(...).fit_transform),
and cases.json with each case's settings, kl_divergence_ and n_iter_.
"""
import json
from pathlib import Path

import numpy as np
from scipy.spatial.distance import squareform
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.manifold._t_sne import _joint_probabilities
from sklearn.metrics import pairwise_distances

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "embedding_map"


def clusters(seed, n, dim, k, spread, repeats=0):
    rng = np.random.default_rng(seed)
    centres = spread * rng.normal(size=(k, dim))
    labels = rng.integers(0, k, size=n - repeats)
    x = centres[labels] + rng.normal(size=(n - repeats, dim))
    if repeats:
        # Exact copies of earlier points (zero distances, points that stay together).
        copies = rng.integers(0, n - repeats, size=repeats)
        x = np.concatenate([x, x[copies]])
    return x.astype(np.float32)


CASES = [
    # name, seed, points, dims, clusters, spread, repeated points, perplexity, max_iter
    ("clusters", 1, 120, 32, 4, 4.0, 0, 30.0, 1000),
    ("repeated", 2, 80, 16, 3, 3.0, 12, 30.0, 1000),
    ("wide", 3, 60, 64, 5, 2.0, 0, 10.0, 500),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    meta = []
    for name, seed, n, dim, k, spread, repeats, perplexity, max_iter in CASES:
        x = clusters(seed, n, dim, k, spread, repeats)
        x64 = x.astype(np.float64)
        pca = np.ascontiguousarray(PCA(n_components=2).fit_transform(x64))
        distances = pairwise_distances(x64, metric="euclidean", squared=True)
        p = squareform(_joint_probabilities(distances, perplexity, 0))
        tsne = TSNE(n_components=2, method="exact", init="pca", perplexity=perplexity,
                    learning_rate="auto", early_exaggeration=12.0, max_iter=max_iter,
                    metric="euclidean")
        embedding = tsne.fit_transform(x64)
        np.save(OUT / f"{name}_x.npy", x)
        np.save(OUT / f"{name}_pca.npy", pca)
        np.save(OUT / f"{name}_p.npy", p)
        np.save(OUT / f"{name}_tsne.npy", embedding.astype(np.float32))
        meta.append({"name": name, "perplexity": perplexity, "max_iter": max_iter,
                     "kl_divergence": float(tsne.kl_divergence_),
                     "n_iter": int(tsne.n_iter_)})
        print(f"{name}: {n} x {dim}, KL {tsne.kl_divergence_:.6f} after {tsne.n_iter_ + 1} iterations")
    (OUT / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
