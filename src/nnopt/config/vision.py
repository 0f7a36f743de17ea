"""Image sets nnopt reads itself from torchvision's on-disk layout (no torchvision needed).

torchvision from the package index is built against a CUDA torch and fails to import
beside a CPU-only torch ('operator torchvision::nms does not exist'); these sets, the ones
optimization papers use most, are therefore read directly from the files torchvision (or
the dataset's own site) puts under `data.path`:
    MNIST, FashionMNIST, KMNIST: {path}/{name}/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    CIFAR10:  {path}/cifar-10-batches-py/data_batch_1..5, test_batch   (python pickles)
    CIFAR100: {path}/cifar-100-python/train, test                     (python pickles)
Any other `data.torchvision_name` needs an importable torchvision.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NATIVE_VISION", "vision_files", "missing_vision_files"]

_IDX = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# name -> (format, folder under data.path, {split: files})
NATIVE_VISION: dict[str, tuple[str, str, dict[str, tuple[str, ...]]]] = {
    "MNIST": ("idx", "MNIST/raw", _IDX),
    "FashionMNIST": ("idx", "FashionMNIST/raw", _IDX),
    "KMNIST": ("idx", "KMNIST/raw", _IDX),
    "CIFAR10": ("cifar10", "cifar-10-batches-py",
                {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}),
    "CIFAR100": ("cifar100", "cifar-100-python", {"train": ("train",), "test": ("test",)}),
}  # fmt: skip


def _existing(path: Path) -> Path | None:
    """The file, or its .gz twin (MNIST mirrors ship gzipped files)."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def vision_files(name: str, root: str | Path) -> dict[str, list[Path | None]]:
    """{split: [file or None when missing]} for a native set under `root`."""
    _, folder, splits = NATIVE_VISION[name]
    base = Path(root) / folder
    return {split: [_existing(base / f) for f in files] for split, files in splits.items()}


def missing_vision_files(name: str, root: str | Path) -> list[Path]:
    _, folder, splits = NATIVE_VISION[name]
    found = vision_files(name, root)
    return [
        Path(root) / folder / f
        for split, files in splits.items()
        for f, path in zip(files, found[split])
        if path is None
    ]
