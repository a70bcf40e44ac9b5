"""`fer-search predict`: classify image files, optionally finding faces in a photo first.

(Not `predict.py`: a submodule of that name would replace the API function `fer_search.predict`
on the package once imported.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_search.config import IMAGE_SIZE
from fer_search.errors import UserError
from fer_search.faces import DEFAULT_DETECTOR, Detector, face_detector
from fer_search.faces.detectors import to_gray

__all__ = ["find_faces", "format_predictions", "load_bgr", "load_gray", "predict"]


def load_gray(path: str | Path) -> np.ndarray:
    """Any image file as a uint8 grayscale array (full size)."""
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise UserError(f"image {str(file)!r} does not exist")
    try:
        with Image.open(file) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"image {str(file)!r} cannot be read as an image ({exc})") from None


def to_48(gray: np.ndarray) -> np.ndarray:
    from PIL import Image

    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return gray
    resized = Image.fromarray(gray).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def load_bgr(path: str | Path) -> np.ndarray:
    """Any image file as a uint8 BGR array (full size), as the face detectors read frames."""
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise UserError(f"image {str(file)!r} does not exist")
    try:
        with Image.open(file) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"image {str(file)!r} cannot be read as an image ({exc})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def find_faces(
    image: np.ndarray, detector: str | Detector = DEFAULT_DETECTOR, min_pixels: int = 0
) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in a BGR or gray uint8 image, from a detector in
    fer_search.faces.DETECTORS (weights inside its package, no download)."""
    find = face_detector(detector) if isinstance(detector, str) else detector
    return [d.box for d in find(image) if min(d.box[2], d.box[3]) >= min_pixels]


def annotate(path: Path, gray: np.ndarray, faces: list[dict[str, Any]], out_dir: Path) -> Path:
    from PIL import Image, ImageDraw

    image = Image.fromarray(gray).convert("RGB")
    draw = ImageDraw.Draw(image)
    for face in faces:
        x, y, w, h = face["box"]
        draw.rectangle([x, y, x + w, y + h], outline=(255, 0, 0), width=2)
        draw.text(
            (x + 2, max(0, y - 12)),
            f"{face['emotion']} {face['probability']:.2f}",
            fill=(255, 0, 0),
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{path.stem}-annotated.png"
    image.save(target)
    return target


def predict(
    checkpoint: str | Path,
    images: list[str],
    *,
    detect_faces: bool = False,
    annotate_dir: str | Path | None = None,
    tta: str = "none",
    device: str = "auto",
    detector: str | Detector = DEFAULT_DETECTOR,
    min_pixels: int = 24,
) -> list[dict[str, Any]]:
    """Each image's emotion (or, with `detect_faces`, each face's of at least `min_pixels`
    a side, found by `detector`), with probabilities; `annotate_dir` (with detect_faces)
    writes annotated copies there."""
    if annotate_dir and not detect_faces:
        raise UserError("--annotate needs --detect-faces")
    find = face_detector(detector) if detect_faces and isinstance(detector, str) else detector
    model, where, class_names = load_model(checkpoint, device)
    results = []
    for name in images:
        if detect_faces:
            bgr = load_bgr(name)
            gray = to_gray(bgr)
            boxes = find_faces(bgr, find, min_pixels)
            crops = [to_48(gray[y : y + h, x : x + w]) for x, y, w, h in boxes]
        else:
            gray = load_gray(name)
            boxes, crops = [], [to_48(gray)]
        probs = classify(model, crops, len(class_names), device=where, tta=tta)
        faces = [face_entry(p, class_names, boxes[i] if detect_faces else None)
                 for i, p in enumerate(probs)]  # fmt: skip
        entry: dict[str, Any] = (
            {"image": name, "faces": faces} if detect_faces else {"image": name, **faces[0]}
        )
        if detect_faces and annotate_dir:
            entry["annotated"] = str(annotate(Path(name), gray, faces, Path(annotate_dir)))
        results.append(entry)
    return results


def load_model(checkpoint: str | Path, device: str) -> tuple[Any, Any, list[str]]:
    """(model in eval mode, its torch device, class names) from a checkpoint."""
    from fer_search import engine

    payload = engine.load_checkpoint(checkpoint)
    where = engine.resolve_device(device)
    return engine.model_from_checkpoint(payload, where), where, list(payload["class_names"])


def classify(model: Any, crops: list[np.ndarray], classes: int, **kwargs: Any) -> np.ndarray:
    """Probabilities (N, classes) of 48x48 crops in one batch; (0, classes) for none."""
    from fer_search import engine

    if not crops:
        return np.zeros((0, classes), dtype=np.float32)
    return engine.predict_probs(model, np.stack(crops), **kwargs)


def face_entry(probs: np.ndarray, class_names: list[str], box: Any) -> dict[str, Any]:
    face: dict[str, Any] = {
        "emotion": class_names[int(probs.argmax())],
        "probability": float(probs.max()),
        "probabilities": {c: round(float(v), 4) for c, v in zip(class_names, probs, strict=True)},
    }
    if box is not None:
        face["box"] = list(box)
    return face


def format_predictions(results: list[dict[str, Any]]) -> str:
    """One line per image or face: the emotion and the top three probabilities."""
    lines = []
    for entry in results:
        for face in entry.get("faces", [entry]):
            where = f" box={face['box']}" if "box" in face else ""
            top = sorted(face["probabilities"].items(), key=lambda kv: -kv[1])[:3]
            others = ", ".join(f"{c} {v:.2f}" for c, v in top)
            lines.append(f"{entry['image']}{where}: {face['emotion']} ({others})")
        if "faces" in entry and not entry["faces"]:
            lines.append(f"{entry['image']}: no face found")
        if "annotated" in entry:
            lines.append(f"  annotated copy: {entry['annotated']}")
    return "\n".join(lines)
