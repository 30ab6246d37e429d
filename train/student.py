"""The student: a BERT classifier with the teacher's tokenizer and labels, its size from the distill options.

Initialisation (``init``):

    teacher-layers  the teacher's own weights: embeddings, pooler, classifier, and one teacher layer per student
                    layer, the last of each of ``layers`` equal blocks (12 → 4: 2, 5, 8, 11; 4 → 2: 1, 3), or
                    ``teacher_layers`` as given. Needs the teacher's width (hidden, heads, intermediate).
    checkpoint      a pre-trained encoder (``init_from``: anything ``--model`` accepts, e.g. ``hf:hfl/rbt3``).
                    Its vocabulary must be the teacher's token for token; every encoder tensor must be there
                    (strict), pre-training heads (``cls.*``) are dropped, and a classifier it lacks (or one for
                    another number of labels) starts fresh: all of it is recorded.
    random          seeded random weights (any size; a narrow student has nothing to copy).
    auto            checkpoint with ``init_from``, else teacher-layers when the width matches, else random.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional, Sequence

from structbert_lite.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

# student option -> BertConfig field
SIZE_FIELDS = {"layers": "num_hidden_layers", "hidden_size": "hidden_size", "heads": "num_attention_heads",
               "intermediate_size": "intermediate_size"}
WIDTH_FIELDS = ("hidden_size", "num_attention_heads", "intermediate_size")
# Architecture fields an init checkpoint decides besides the sizes.
CHECKPOINT_FIELDS = ("max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps")
PRETRAINING_HEADS = ("cls.",)  # masked-LM / next-sentence heads of a pre-trained encoder
FRESH_ALLOWED = ("classifier.", "bert.pooler.")  # may start fresh from an init checkpoint that lacks them


def requested_sizes(options) -> dict[str, Optional[int]]:
    """{BertConfig field: the size the options ask for, or None}."""
    return {field: getattr(options, name) for name, field in SIZE_FIELDS.items()}


def default_sizes(teacher_config, requested: dict) -> dict[str, int]:
    """Sizes left open take the teacher's width and half its depth (rounded up)."""
    sizes = {field: getattr(teacher_config, field) for field in WIDTH_FIELDS}
    sizes["num_hidden_layers"] = math.ceil(teacher_config.num_hidden_layers / 2)
    sizes.update({k: v for k, v in requested.items() if v is not None})
    return sizes


def student_config(teacher_config, sizes: dict, extra: Optional[dict] = None):
    """The teacher's config (vocabulary, labels, positions) with the student's sizes."""
    from transformers import BertConfig

    if sizes["hidden_size"] % sizes["num_attention_heads"]:
        raise ConfigError(
            f"distill: hidden_size {sizes['hidden_size']} is not divisible by heads {sizes['num_attention_heads']}"
        )
    data = teacher_config.to_dict()
    data.update(sizes)
    data.update(extra or {})
    for key in ("architectures", "_name_or_path", "transformers_version"):
        data.pop(key, None)
    data["id2label"] = {int(k): v for k, v in teacher_config.id2label.items()}
    data["label2id"] = {v: int(k) for k, v in teacher_config.id2label.items()}
    return BertConfig(**data)


def choose_init(init: str, init_from: Optional[str], teacher_config, sizes: dict) -> str:
    """The init actually used (``auto`` resolved); an impossible combination is a `ConfigError` (init_from with
    another init than auto/checkpoint is already refused by the distill step's Options)."""
    if init == "checkpoint" and not init_from:
        raise ConfigError("distill: init: checkpoint needs init_from (a folder, a ModelScope id or hf:<owner>/<name>)")
    if init == "auto":
        if init_from:
            return "checkpoint"
        same_width = all(sizes[f] == getattr(teacher_config, f) for f in WIDTH_FIELDS)
        fits = same_width and sizes["num_hidden_layers"] <= teacher_config.num_hidden_layers
        return "teacher-layers" if fits else "random"
    return init


def pick_teacher_layers(
    teacher_layers: int, student_layers: int, explicit: Optional[Sequence[int]] = None
) -> list[int]:
    """The teacher layer each student layer starts from: the last of each of ``student_layers`` equal blocks."""
    if explicit is not None:
        picked = list(explicit)
        if len(picked) != student_layers or any(not 0 <= i < teacher_layers for i in picked):
            raise ConfigError(
                f"distill: teacher_layers {picked} must name {student_layers} layer indices in 0..{teacher_layers - 1}"
            )
        return picked
    if student_layers > teacher_layers:
        raise ConfigError(
            f"distill: init: teacher-layers copies teacher layers, but the student has {student_layers} layers and the "
            f"teacher {teacher_layers}; use fewer layers or init: random"
        )
    return [math.floor((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def copy_teacher_layers(student, teacher, layers: Sequence[int]) -> None:
    """Student tensors from the teacher: embeddings, pooler, classifier and teacher layer ``layers[i]`` as layer i."""
    import torch

    source = teacher.state_dict()
    mapped = {}
    for key in student.state_dict():
        name = key
        if key.startswith("bert.encoder.layer."):
            index, rest = key[len("bert.encoder.layer."):].split(".", 1)
            name = f"bert.encoder.layer.{layers[int(index)]}.{rest}"
        mapped[key] = source[name].detach().clone()
    with torch.no_grad():
        student.load_state_dict(mapped, strict=True)


def check_width(teacher_config, sizes: dict) -> None:
    differ = {f: (sizes[f], getattr(teacher_config, f)) for f in WIDTH_FIELDS if sizes[f] != getattr(teacher_config, f)}
    if differ:
        shown = ", ".join(f"{f} {mine} (teacher {theirs})" for f, (mine, theirs) in differ.items())
        raise ConfigError(
            f"distill: init: teacher-layers needs the teacher's width, but {shown}; use init: random or auto"
        )


def build_student(teacher, options, seed: int, vocab_path: Path) -> tuple[object, dict]:
    """(student model in train-ready state, init record) for the distill ``options`` and the ``teacher`` model."""
    import torch
    from transformers import BertForSequenceClassification

    teacher_config = teacher.config
    requested = requested_sizes(options)
    sizes = default_sizes(teacher_config, requested)
    init = choose_init(options.init, options.init_from, teacher_config, sizes)
    if init == "checkpoint":
        return load_init_checkpoint(options.init_from, teacher_config, requested, vocab_path, seed)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(student_config(teacher_config, sizes))
    record: dict = {"init": init}
    if init == "teacher-layers":
        check_width(teacher_config, sizes)
        layers = pick_teacher_layers(teacher_config.num_hidden_layers, sizes["num_hidden_layers"],
                                     options.teacher_layers)
        copy_teacher_layers(model, teacher, layers)
        record["teacher_layers"] = layers
        logger.info("student initialised from teacher layers %s (+ embeddings, pooler, classifier)", layers)
    else:
        logger.info("student initialised with random weights (seed %d)", seed)
    return model, record


def load_init_checkpoint(
    spec: str, teacher_config, requested: dict, vocab_path: Path, seed: int
) -> tuple[object, dict]:
    """A student from a pre-trained encoder ``spec`` (resolved like ``--model``), loaded strictly."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from structbert_lite.convert.checkpoint import check_config_values, find_weights, read_state_dict, remap_state_dict
    from structbert_lite.convert.labels import read_json_object
    from structbert_lite.train.finetune import resolve_checkpoint

    folder, source = resolve_checkpoint(spec)
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"distill init_from {spec}: {folder} has no config.json")
    raw = read_json_object(folder / "config.json")
    check_config_values(folder / "config.json", raw)
    defaults = BertConfig()
    sizes = {f: raw.get(f, getattr(defaults, f)) for f in SIZE_FIELDS.values()}
    conflicts = {f: (want, sizes[f]) for f, want in requested.items() if want is not None and want != sizes[f]}
    if conflicts:
        shown = ", ".join(f"{f} {want} (checkpoint {have})" for f, (want, have) in conflicts.items())
        raise ConfigError(f"distill: init_from {spec} decides the student's size, but the options ask for {shown}; "
                          "leave the sizes out (null) or pick another checkpoint")
    check_same_vocab(folder / "vocab.txt", vocab_path, spec)
    extra = {k: raw[k] for k in CHECKPOINT_FIELDS if k in raw}
    torch.manual_seed(seed)
    model = BertForSequenceClassification(student_config(teacher_config, sizes, extra))
    weights = find_weights(folder)
    state, remaps = remap_state_dict(read_state_dict(weights))
    state, record = match_init_state(model, state, weights)
    model.load_state_dict(state, strict=False)  # strictness checked by match_init_state
    record.update(init="checkpoint", init_from=source, key_remaps=remaps, weights_file=weights.name)
    logger.info("student initialised from %s (%s)", spec,
                ", ".join(f"{k}: {v}" for k, v in record.items() if k == "fresh"))
    return model, record


def match_init_state(model, state: dict, weights: Path) -> tuple[dict, dict]:
    """``state`` reduced to the student's tensors; a missing encoder tensor, an unknown tensor or a wrong
    shape is a `CheckpointError`. Pre-training heads are dropped; a head the checkpoint lacks starts fresh."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    dropped = sorted(k for k in state if k.startswith(PRETRAINING_HEADS))
    state = {k: v for k, v in state.items() if not k.startswith(PRETRAINING_HEADS) and not k.endswith("position_ids")}
    replaced = sorted(k for k in state
                      if k.startswith("classifier.") and k in expected and tuple(state[k].shape) != expected[k])
    state = {k: v for k, v in state.items() if k not in replaced}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in state if k in expected and tuple(state[k].shape) != expected[k])
    fatal = [k for k in missing if not k.startswith(FRESH_ALLOWED)]
    if fatal or unexpected or wrong:
        parts = [f"{what}: {', '.join(keys[:6])}{' …' if len(keys) > 6 else ''}"
                 for what, keys in (("missing", fatal), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"distill init_from {weights} does not fit a BERT encoder of its own config.json "
                              f"({'; '.join(parts)}); refusing to start the student from it")
    fresh = sorted({k.rsplit(".", 1)[0] for k in missing})
    return state, {"fresh": fresh, "dropped_pretraining_heads": len(dropped), "replaced_classifier": bool(replaced)}


def check_same_vocab(init_vocab: Path, teacher_vocab: Path, spec: str) -> None:
    """The init checkpoint's vocabulary must be the teacher's, token for token (the student uses its tokenizer)."""
    from structbert_lite.convert.tokenizer_files import read_vocab

    mine, theirs = read_vocab(init_vocab), read_vocab(teacher_vocab)
    if mine == theirs:
        return
    first = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs)))
    raise CheckpointError(
        f"distill init_from {spec} has another vocabulary than the teacher ({len(mine)} vs {len(theirs)} tokens, "
        f"first difference at line {first + 1}): the student uses the teacher's tokenizer, so its embeddings must "
        "be for the same tokens; pick a checkpoint with the teacher's vocab.txt, or init: random"
    )


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
