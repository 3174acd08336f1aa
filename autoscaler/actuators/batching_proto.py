"""TF Serving's `BatchingParameters` message, for reading a batching file the way TF Serving does.

TF Serving parses `--batching_parameters_file` as a protobuf text-format `BatchingParameters`
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto, in tensorflow/serving). The
`tensorflow-serving-api` wheel (the `[tfserving]` extra) ships only the `apis/` and `config/`
modules, not `servables/tensorflow/session_bundle_config_pb2`, so unless some installed build has it
we build the message here from the upstream definition: fields 1-7 with the upstream numbers and
types (Int64Value / StringValue wrappers, `repeated int64 allowed_batch_sizes = 6`,
`bool pad_variable_length_inputs = 7`). It lives in a private descriptor pool so it cannot clash
with a real `tensorflow.serving.BatchingParameters` registered by another import. protobuf is a
base dependency (grpcio's runtime), so this works with or without the extra.

`parse()` validates a file with `google.protobuf.text_format`: syntax, types of the fields we know,
and the "no repeated singular field" rule, exactly where TF Serving would refuse to start. Fields
newer than this definition (e.g. large-batch splitting) are skipped by the validator and kept
verbatim by the editor in `batching_file.py`, which never re-serialises the message.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

FULL_NAME = "tensorflow.serving.BatchingParameters"
_FD = descriptor_pb2.FieldDescriptorProto
# (name, number, type, type_name, label): tensorflow_serving/servables/tensorflow/session_bundle_config.proto
_FIELDS = (
    ("max_batch_size", 1, _FD.TYPE_MESSAGE, ".google.protobuf.Int64Value", _FD.LABEL_OPTIONAL),
    ("batch_timeout_micros", 2, _FD.TYPE_MESSAGE, ".google.protobuf.Int64Value", _FD.LABEL_OPTIONAL),
    ("max_enqueued_batches", 3, _FD.TYPE_MESSAGE, ".google.protobuf.Int64Value", _FD.LABEL_OPTIONAL),
    ("num_batch_threads", 4, _FD.TYPE_MESSAGE, ".google.protobuf.Int64Value", _FD.LABEL_OPTIONAL),
    ("thread_pool_name", 5, _FD.TYPE_MESSAGE, ".google.protobuf.StringValue", _FD.LABEL_OPTIONAL),
    ("allowed_batch_sizes", 6, _FD.TYPE_INT64, "", _FD.LABEL_REPEATED),
    ("pad_variable_length_inputs", 7, _FD.TYPE_BOOL, "", _FD.LABEL_OPTIONAL),
)


class ParseError(ValueError):
    """The text is not a valid BatchingParameters text-format message."""


@lru_cache(maxsize=1)
def message_class() -> Any:
    """The BatchingParameters class: TF Serving's generated module if installed, else built here."""
    try:  # some tensorflow-serving builds ship the servables protos
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="autoscaler/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    msg = fdp.message_type.add(name="BatchingParameters")
    for name, number, ftype, type_name, label in _FIELDS:
        field = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            field.type_name = type_name
        if label == _FD.LABEL_REPEATED and ftype == _FD.TYPE_INT64:
            field.options.packed = True  # proto3 packs repeated scalars by default
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(FULL_NAME))


def parse(text: str) -> Any:
    """The message `text` holds; unknown (newer) fields are skipped. Raises ParseError."""
    try:
        return text_format.Parse(text, message_class()(), allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise ParseError(str(exc)) from exc
