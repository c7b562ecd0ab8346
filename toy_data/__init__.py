"""Data sets for the lessons: toy 2-D/3-D generators (and, later, MNIST-style loaders)."""

from .toy import (
    FIG3_PAPER_SAMPLES,
    TOY_DATASETS,
    ToyData,
    ToyDataset,
    blobs,
    fig3,
    imbalanced,
    imbalanced_sizes,
    make_dataset,
    moons,
    sphere,
    spirals,
)

__all__ = [
    "FIG3_PAPER_SAMPLES",
    "TOY_DATASETS",
    "ToyData",
    "ToyDataset",
    "blobs",
    "fig3",
    "imbalanced",
    "imbalanced_sizes",
    "make_dataset",
    "moons",
    "sphere",
    "spirals",
]

# MNIST / Fashion-MNIST / digits loaders (issue 4)
from .mnist import (  # noqa: E402
    DATASETS,
    DatasetError,
    DatasetMissing,
    DatasetStatus,
    ImageDataset,
    available_datasets,
    dataset_names,
    default_cache_dir,
    download,
    load_dataset,
    read_idx,
    read_idx_header,
)

__all__ += [
    "DATASETS",
    "DatasetError",
    "DatasetMissing",
    "DatasetStatus",
    "ImageDataset",
    "available_datasets",
    "dataset_names",
    "default_cache_dir",
    "download",
    "load_dataset",
    "read_idx",
    "read_idx_header",
]

# Synthetic face identities and builders for insightface's RecordIO / .bin formats (issue 6)
from .faces import (  # noqa: E402
    HELD_OUT_OFFSET,
    FaceParams,
    SyntheticFacesInfo,
    build_bin_from_pairs,
    build_rec_from_folder,
    face_image,
    identity_params,
    make_synthetic_faces,
    make_verification_bin,
    read_pairs_file,
    render_face,
)

__all__ += [
    "HELD_OUT_OFFSET",
    "FaceParams",
    "SyntheticFacesInfo",
    "build_bin_from_pairs",
    "build_rec_from_folder",
    "face_image",
    "identity_params",
    "make_synthetic_faces",
    "make_verification_bin",
    "read_pairs_file",
    "render_face",
]
