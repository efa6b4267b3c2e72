from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lit_metric import EmbeddingIndex
from lit_metric.callbacks import EmbeddingWriter
from lit_metric.cli import main
from lit_metric.metrics import RetrievalMetrics

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "digits_triplet.yaml")


class _Embedder(L.LightningModule):
    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.as_dict = as_dict

    def predict_step(self, batch: object, batch_idx: int, dataloader_idx: int = 0) -> Tensor | dict[str, Tensor]:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        z = self.lin(x)
        return {"embeddings": z, "labels": batch[1]} if self.as_dict else z  # type: ignore[index]


def _predict(model: L.LightningModule, loaders: object, writer: EmbeddingWriter) -> None:
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False, enable_model_summary=False)
    trainer.predict(model, loaders, return_predictions=False)  # type: ignore[arg-type]


def test_plain_tensor_predictions_get_running_ids(tmp_path: Path) -> None:
    x = torch.randn(10, 3)
    writer = EmbeddingWriter(str(tmp_path / "out.npz"), dtype="float16")
    model = _Embedder()
    _predict(model, DataLoader(TensorDataset(x), batch_size=4), writer)
    with np.load(tmp_path / "out.npz") as data:
        assert sorted(data.files) == ["embeddings", "ids"]
        assert data["embeddings"].dtype == np.float16 and data["ids"].tolist() == list(range(10))
        np.testing.assert_allclose(data["embeddings"], model.lin(x).detach().numpy(), atol=2e-3)


def test_dict_predictions_and_several_dataloaders(tmp_path: Path) -> None:
    x, y = torch.randn(6, 3), torch.arange(6)
    loaders = [DataLoader(TensorDataset(x, y), batch_size=4), DataLoader(TensorDataset(x[:2], y[:2]), batch_size=4)]
    writer = EmbeddingWriter(str(tmp_path / "out"))
    _predict(_Embedder(as_dict=True), loaders, writer)
    assert [p.name for p in writer.written] == ["out_0", "out_1"]
    assert np.load(tmp_path / "out_0" / "labels.npy").tolist() == list(range(6))
    assert np.load(tmp_path / "out_1" / "embeddings.npy").shape == (2, 2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="Expected argument `output_path`"):
        EmbeddingWriter("emb.csv")
    with pytest.raises(ValueError, match="Expected argument `dtype`"):
        EmbeddingWriter("emb.pt", dtype="int8")  # type: ignore[arg-type]


def test_cli_predict_from_checkpoint_of_a_tiny_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = str(tmp_path)
    main(["fit", "--config", CONFIG, "--trainer.max_epochs=1", "--data.init_args.batches_per_epoch=2",
          "--trainer.enable_checkpointing=true", f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
          "--trainer.limit_val_batches=1", "--trainer.callbacks=[]"])
    (ckpt,) = list(tmp_path.glob("**/*.ckpt"))
    # `lit-metric predict --config ... --ckpt_path ...`: the CLI adds an EmbeddingWriter (default_root_dir/embeddings.pt)
    main(["predict", "--config", CONFIG, "--ckpt_path", str(ckpt), f"--trainer.default_root_dir={root}"])
    data = torch.load(tmp_path / "embeddings.pt", weights_only=True)
    assert data["embeddings"].shape[0] == 896 and data["embeddings"].dtype == torch.float32
    assert data["ids"].tolist() == list(range(896))  # dataset indices of the evaluation split (digits 5-9)
    assert set(data["labels"].tolist()) == {5, 6, 7, 8, 9}
    torch.testing.assert_close(data["embeddings"].norm(dim=1), torch.ones(896))
    # a writer configured on the command line replaces the automatic one
    main(["predict", "--config", CONFIG, "--ckpt_path", str(ckpt), f"--trainer.default_root_dir={root}",
          "--trainer.callbacks+=lit_metric.callbacks.EmbeddingWriter", f"--trainer.callbacks.output_path={root}/emb.npz"])
    index = EmbeddingIndex.from_predictions(tmp_path / "emb.npz")
    torch.testing.assert_close(index.embeddings, data["embeddings"])
    metric = RetrievalMetrics(metrics=("precision@1",))
    metric.update(index.embeddings, index.labels, index.ids)  # type: ignore[arg-type]
    assert metric.compute()["precision@1"] > 0.3  # trained for 2 steps: well above chance (0.2)
