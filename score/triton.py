"""A Triton Inference Server model repository from a variant folder: the alternative for online serving at scale.

    REPO/<name>/
      config.pbtxt     backend "onnxruntime", KIND_CPU instances, dynamic batching, inputs/outputs of the graph
      labels.txt       one English label per line, in id order (Triton's classification extension reads it)
      1/model.onnx     the variant's model, byte for byte

The config is built as Triton's own `ModelConfig` protobuf (`tritonclient.grpc.model_config_pb2`), written in
text format, parsed back with `google.protobuf.text_format` (an unknown field or enum value fails there, as it
would in Triton) and cross-checked with the ONNX graph: every graph input and output is declared with its
element type and rank (batch dimension implied by max_batch_size), nothing else is. Triton serves token ids, not
text: a client tokenizes with the variant's tokenizer.json (see README, "When one machine is not enough").

A variant that is not batch-invariant (dynamic int8: one activation scale per batch) gets max_batch_size 1 and
no dynamic batching, so an answer never depends on which requests Triton batched it with.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

from structbert_lite.artifact import publish_atomically, read_manifest, staging_dir
from structbert_lite.errors import ArtifactError
from structbert_lite.score import ScoreError

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.pbtxt"
LABELS_NAME = "labels.txt"
MODEL_VERSION = "1"
QUEUE_DELAY_US = 500  # how long the dynamic batcher may hold a request to batch it with others
# ONNX TensorProto element type -> Triton DataType name
ONNX_TO_TRITON = {1: "TYPE_FP32", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64"}


def _model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise ScoreError(f"export-triton validates against Triton's schema, which needs tritonclient[grpc] ({exc}): "
                         "pip install 'structbert-lite[cluster]'") from None
    return model_config_pb2


def graph_signature(model_path: Path) -> tuple[dict, dict]:
    """({input name: (Triton type, rank)}, {output name: (Triton type, dims)}) of an ONNX graph."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(value) -> tuple[str, list]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return ONNX_TO_TRITON.get(tensor.elem_type, f"onnx elem_type {tensor.elem_type}"), dims

    inputs = {v.name: describe(v) for v in graph.input if v.name not in initializers}
    outputs = {v.name: describe(v) for v in graph.output}
    return inputs, outputs


def build_config(name: str, model_path: Path, num_labels: int, max_batch_size: int, instances: int,
                 batch_invariant: bool, threads: int = 1):
    """The `ModelConfig` message for ``model_path`` (its first dimension is the batch)."""
    pb2 = _model_config_pb2()
    inputs, outputs = graph_signature(model_path)
    config = pb2.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size if batch_invariant else 1)
    for input_name, (dtype, dims) in inputs.items():
        config.input.add(name=input_name, data_type=pb2.DataType.Value(dtype), dims=[-1] * (len(dims) - 1))
    for output_name, (dtype, _dims) in outputs.items():
        output = config.output.add(name=output_name, data_type=pb2.DataType.Value(dtype), dims=[num_labels])
        if output_name == "logits":
            output.label_filename = LABELS_NAME
    if batch_invariant:
        config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    config.instance_group.add(kind=pb2.ModelInstanceGroup.KIND_CPU, count=instances)
    config.parameters["intra_op_thread_count"].string_value = str(threads)
    config.parameters["inter_op_thread_count"].string_value = "1"
    return config


def check_config(config_text: str, model_path: Path) -> list[str]:
    """Problems of a config.pbtxt against Triton's schema and against the ONNX graph it serves ([] = valid)."""
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    try:
        config = text_format.Parse(config_text, pb2.ModelConfig())
    except text_format.ParseError as exc:
        return [f"not a valid Triton ModelConfig: {exc}"]
    problems = []
    if config.backend != "onnxruntime":
        problems.append(f"backend is {config.backend!r}, not 'onnxruntime'")
    if config.max_batch_size < 1:
        problems.append("max_batch_size must be >= 1 (the graph's first dimension is the batch)")
    inputs, outputs = graph_signature(model_path)
    for kind, declared, graph in (("input", config.input, inputs), ("output", config.output, outputs)):
        names = [t.name for t in declared]
        problems += [f"graph {kind} {n!r} is not declared" for n in graph if n not in names]
        for tensor in declared:
            if tensor.name not in graph:
                problems.append(f"{kind} {tensor.name!r} is not in the ONNX graph")
                continue
            dtype, dims = graph[tensor.name]
            if pb2.DataType.Name(tensor.data_type) != dtype:
                declared_type = pb2.DataType.Name(tensor.data_type)
                problems.append(f"{kind} {tensor.name!r} is {declared_type}, the graph says {dtype}")
            expected = dims[1:]
            same_rank = len(tensor.dims) == len(expected)
            if not same_rank or any(e not in (-1, d) for d, e in zip(tensor.dims, expected, strict=True)):
                problems.append(
                    f"{kind} {tensor.name!r} has dims {list(tensor.dims)}, the graph has {expected} after the batch"
                )
    return problems


def export_triton(artifact: Path, repository: Path, name: Optional[str] = None, max_batch_size: int = 32,
                  instances: int = 1, threads: int = 1) -> Path:
    """Write ``repository/<name>`` (atomically) for the ONNX variant ``artifact``; returns that folder."""
    from structbert_lite.runtime import is_batch_invariant, read_label_names
    from structbert_lite.score.job import check_artifact

    artifact = Path(artifact)
    check_artifact(artifact)
    model_path = artifact / "model.onnx"
    if not model_path.is_file():
        raise ArtifactError(f"{artifact} has no model.onnx: export-triton takes an ONNX variant (an OpenVINO one "
                            "would use Triton's openvino backend)")
    for label, value in (("--max-batch-size", max_batch_size), ("--instances", instances)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ScoreError(f"{label} must be a whole number >= 1; got {value!r}")
    name = name or artifact.name
    labels = read_label_names(artifact)
    invariant = is_batch_invariant(read_manifest(artifact))
    if not invariant:
        logger.warning("%s is not batch-invariant: max_batch_size 1, no dynamic batching (answers must not depend "
                       "on batch neighbours); scale with --instances instead", artifact)
    config = build_config(name, model_path, len(labels), max_batch_size, instances, invariant, threads)
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    problems = check_config(text, model_path)
    if problems:
        raise ScoreError(f"internal error: the Triton config for {artifact} does not validate: {'; '.join(problems)}")
    final = Path(repository) / name
    with staging_dir(final) as staged:
        (staged / CONFIG_NAME).write_text(text, encoding="utf-8")
        (staged / LABELS_NAME).write_text("\n".join(labels) + "\n", encoding="utf-8")
        (staged / MODEL_VERSION).mkdir()
        shutil.copyfile(model_path, staged / MODEL_VERSION / "model.onnx")
        publish_atomically(staged, final)
    return final
