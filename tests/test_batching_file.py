"""The batching-file editor: only the tuned fields change; the rest of TF Serving's file survives.

Files are written the way operators and TF Serving's docs write them (wrapper values
`max_batch_size { value: 32 }`, repeated or list `allowed_batch_sizes`, comments, fields newer
than our message definition). Each edit is read back through `google.protobuf.text_format` with
the upstream `BatchingParameters` message, so a test fails if the output would not load.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.actuators import batching_proto
from autoscaler.actuators.batching_file import BatchingFile, BatchingFileError
from autoscaler.spec.types import BatchingParams

OPERATOR_FILE = """# resnet50 batching, tuned by hand in 2025
max_batch_size { value: 32 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
thread_pool_name { value: "resnet_batch_threads" }
allowed_batch_sizes: 8
allowed_batch_sizes: 16
allowed_batch_sizes: 32
pad_variable_length_inputs: true
max_execution_batch_size { value: 32 }  # newer than our message: kept verbatim
"""


def test_reads_wrapped_values_and_keeps_defaults_for_omitted_fields() -> None:
    f = BatchingFile.parse("max_batch_size { value: 0x40 }\nbatch_timeout_micros: { value: 500 };\n")
    assert f.params(BatchingParams(8, 2_000, 2, 77)) == BatchingParams(64, 500, 2, 77)


def test_round_trip_changes_only_the_tuned_digits() -> None:
    f = BatchingFile.parse(OPERATOR_FILE)
    assert f.params(BatchingParams()) == BatchingParams(32, 1_000, 4, 100)
    same, notes = f.with_params(BatchingParams(32, 1_000, 4, 100))
    assert same == OPERATOR_FILE and notes == ()
    new, notes = f.with_params(BatchingParams(32, 5_000, 2, 100))
    assert new == OPERATOR_FILE.replace("{ value: 1000 }", "{ value: 5000 }").replace(
        "num_batch_threads { value: 4 }", "num_batch_threads { value: 2 }"
    )
    msg = batching_proto.parse(new)
    assert msg.thread_pool_name.value == "resnet_batch_threads"
    assert list(msg.allowed_batch_sizes) == [8, 16, 32] and msg.pad_variable_length_inputs
    assert "max_execution_batch_size { value: 32 }  # newer than our message: kept verbatim" in new


def test_allowed_batch_sizes_end_at_the_new_max_batch_size() -> None:
    f = BatchingFile.parse(OPERATOR_FILE)
    bigger, notes = f.with_params(BatchingParams(64, 1_000, 4, 100))
    assert list(batching_proto.parse(bigger).allowed_batch_sizes) == [8, 16, 32, 64]
    assert notes and "[8, 16, 32] -> [8, 16, 32, 64]" in notes[0]
    smaller, _ = f.with_params(BatchingParams(16, 1_000, 4, 100))
    msg = batching_proto.parse(smaller)
    assert list(msg.allowed_batch_sizes) == [8, 16] and msg.max_batch_size.value == 16
    assert "allowed_batch_sizes: 32" not in smaller and "\n\n" not in smaller  # the dropped line is gone
    listed, _ = BatchingFile.parse("max_batch_size { value: 32 }\nallowed_batch_sizes: [4, 32]\n").with_params(
        BatchingParams(12, 1_000, 4, 100)
    )
    assert "allowed_batch_sizes: [4, 12]" in listed


def test_large_batch_splitting_leaves_allowed_batch_sizes_alone() -> None:
    text = "max_batch_size { value: 256 }\nenable_large_batch_splitting: true\nallowed_batch_sizes: [32, 64]\n"
    new, notes = BatchingFile.parse(text).with_params(BatchingParams(128, 1_000, 4, 100))
    assert "allowed_batch_sizes: [32, 64]" in new and notes == ()


def test_missing_tuned_fields_are_appended() -> None:
    text = 'thread_pool_name { value: "pool" }'
    new, _ = BatchingFile.parse(text).with_params(BatchingParams(16, 0, 1, 10))
    assert new.startswith(text + "\n")
    assert BatchingFile.parse(new).params(BatchingParams()) == BatchingParams(16, 0, 1, 10)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_batch_size: 32\n", 'Expected "{"'),  # TF Serving needs the Int64Value wrapper
        ("max_batch_size { value: 8 }\nmax_batch_size { value: 16 }\n", "multiple"),
        ("max_batch_size { value: 8 \n", "expected '}'"),
        ("max_batch_size { value: 1.5 }\n", "integer"),
        ("num_batch_threads { value: 2 } !\n", "unexpected character '!' at line 1, column 32"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(text: str, needle: str) -> None:
    with pytest.raises(BatchingFileError) as err:
        BatchingFile.parse(text).params(BatchingParams())
    assert needle in str(err.value)


# Lines an operator may put in the file; each keyed by field so one field appears once.
_OTHER_LINES = {
    "thread_pool_name": ['thread_pool_name { value: "pool_a" }', "thread_pool_name: < value: 'p\\'b' >"],
    "pad_variable_length_inputs": ["pad_variable_length_inputs: true", "pad_variable_length_inputs: false;"],
    "max_execution_batch_size": ["max_execution_batch_size { value: 48 }"],
    "batch_padding_policy": ['batch_padding_policy: "PAD_UP"'],
    "comment": ["# tuned by hand", "## keep this"],
}
_TUNED_LINES = {
    "max_batch_size": ["max_batch_size { value: 32 }", "max_batch_size: { value: 0x20 }", "max_batch_size <value: 32>"],
    "batch_timeout_micros": ["batch_timeout_micros { value: 1000 }", "batch_timeout_micros {}"],
    "num_batch_threads": ["num_batch_threads { value: 4 },"],
    "max_enqueued_batches": ["max_enqueued_batches { value: 100 }"],
}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    picks=st.lists(
        st.sampled_from(sorted({**_OTHER_LINES, **_TUNED_LINES})), unique=True, min_size=0, max_size=9
    ).flatmap(lambda keys: st.tuples(*(st.sampled_from({**_OTHER_LINES, **_TUNED_LINES}[k]) for k in keys))),
    new=st.builds(
        BatchingParams,
        st.sampled_from([1, 8, 32, 64]),
        st.sampled_from([0, 500, 20_000]),
        st.integers(1, 8),
        st.integers(1, 1_000),
    ),
)
def test_any_file_keeps_every_untuned_line(picks: tuple[str, ...], new: BatchingParams) -> None:
    text = "\n".join(picks) + "\n"
    out, _ = BatchingFile.parse(text).with_params(new)
    assert BatchingFile.parse(out).params(BatchingParams()) == new
    msg = batching_proto.parse(out)
    assert (msg.max_batch_size.value, msg.batch_timeout_micros.value) == (new.max_batch_size, new.batch_timeout_us)
    for line in picks:
        if not any(line.startswith(k) for k in _TUNED_LINES):
            assert line in out.splitlines()  # untouched, byte for byte
