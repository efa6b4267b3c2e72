"""Index a gallery of embeddings, query it, and verify pairs with a threshold chosen on the data.

    python examples/search_gallery.py                      # trains a small model on digits 0-4 first (~1 min CPU)
    python examples/search_gallery.py --predictions emb.pt # or use `lit-metric predict` output

With ``--predictions`` the embeddings come from ``lit-metric predict --config configs/digits_triplet.yaml
--ckpt_path <ckpt>`` (an ``EmbeddingWriter`` file: ``embeddings``, ``ids``, ``labels``).  Otherwise a small
convnet is trained on digits 0-4 for a few epochs and the unseen digits 5-9 are embedded.

The items are then split In-Shop style: the first 3 images of each class are queries, the rest the gallery.
The script reports retrieval metrics (query → gallery), chooses a verification threshold on the gallery,
builds an :class:`~lit_metric.EmbeddingIndex`, saves and reloads it, and prints the top matches of a few
queries and a few same/different decisions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_metric import EmbeddingIndex  # noqa: E402
from lit_metric.metrics import RetrievalMetrics, VerificationMetrics  # noqa: E402


def train_and_embed(epochs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A quick model on digits 0-4; embeddings, labels and dataset ids of the unseen digits 5-9."""
    import lightning as L

    from lit_metric import MetricLearningModule
    from lit_metric.backbones import ConvNet
    from lit_metric.callbacks import EmbeddingWriter
    from lit_metric.data import DigitsDataModule
    from lit_metric.miners import TripletMiner

    L.seed_everything(0)
    model = MetricLearningModule(
        backbone=ConvNet(1, (32, 64)), embedding_dim=32, miner=TripletMiner("semihard"),
        optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
    )
    data = DigitsDataModule(p=5, k=16, batches_per_epoch=20)
    common = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False)
    L.Trainer(max_epochs=epochs, limit_val_batches=0, enable_progress_bar=False, **common).fit(model, data)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        writer = EmbeddingWriter(str(Path(tmp) / "emb.pt"))
        L.Trainer(callbacks=[writer], **common).predict(model, data, return_predictions=False)  # type: ignore[arg-type]
        out = torch.load(Path(tmp) / "emb.pt", weights_only=True)
    return out["embeddings"], out["labels"], out["ids"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, help="an EmbeddingWriter file (.pt/.npz/folder) with labels")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--queries-per-class", type=int, default=3)
    args = parser.parse_args(argv)

    if args.predictions is not None:
        loaded = EmbeddingIndex.from_predictions(args.predictions)
        if loaded.labels is None:
            raise SystemExit("the predictions file has no labels: this example needs them to split and score")
        emb, labels, ids = loaded.embeddings, loaded.labels, loaded.ids
    else:
        emb, labels, ids = train_and_embed(args.epochs)

    # In-Shop style split: the first images of each class are queries, the rest the gallery
    rank_in_class = torch.zeros_like(labels)
    for c in labels.unique():
        members = (labels == c).nonzero(as_tuple=True)[0]
        rank_in_class[members] = torch.arange(members.numel())
    is_query = rank_in_class < args.queries_per_class

    retrieval = RetrievalMetrics(metrics=("recall@k", "precision@1", "r_precision", "map@r"), k=(1, 5))
    retrieval.update(emb, labels, ids, is_query=is_query, is_gallery=~is_query)
    print("query → gallery retrieval:", {k: round(float(v), 3) for k, v in retrieval.compute().items()})

    verification = VerificationMetrics(far=(1e-2,))
    verification.update(emb[~is_query], labels[~is_query], ids[~is_query])
    ver = verification.compute()
    print("verification on the gallery:", {k: round(float(v), 3) for k, v in ver.items()})

    index = EmbeddingIndex(emb[~is_query], ids=ids[~is_query], labels=labels[~is_query], threshold=float(ver["threshold"]))
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "gallery.index")
        index = EmbeddingIndex.load(Path(tmp) / "gallery.index")
    print(index)

    queries, query_labels, query_ids = emb[is_query][:5], labels[is_query][:5], ids[is_query][:5]
    scores, found = index.search(queries, k=5)
    for qid, qlabel, row_scores, row_ids in zip(query_ids, query_labels, scores, found):
        matches = ", ".join(
            f"#{int(i)} (digit {int(lab)}, cos {float(s):.2f})"
            for i, lab, s in zip(row_ids, index.labels_of(row_ids), row_scores)
        )
        print(f"query #{int(qid)} (digit {int(qlabel)}): {matches}")

    # verification: each query against one gallery item of its own class and one of another class
    gallery, gallery_labels = emb[~is_query], labels[~is_query]
    own = torch.stack([gallery[gallery_labels == y][0] for y in query_labels])
    other = torch.stack([gallery[gallery_labels != y][0] for y in query_labels])
    print(f"verify at threshold {index.threshold:.3f} (same when cosine >= threshold):")
    print("  same-class pairs  ->", index.verify(queries, own).tolist())
    print("  other-class pairs ->", index.verify(queries, other).tolist())


if __name__ == "__main__":
    main()
