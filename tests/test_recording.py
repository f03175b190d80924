"""The recording format: round trip, self-description, durability and damage."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
from mcap.reader import make_reader

from broker.recording.format import RUN_METADATA, record_schema, to_frames, to_record
from broker.recording.reader import RecordingError, RecordingReader
from broker.recording.writer import FLUSH_SECONDS, RecordingWriter
from protocol import MESSAGE_TYPES, Envelope, decode, encode
from tests.recordings import small_run, write_recording


def same(a: Envelope, b: Envelope) -> bool:
    return encode(a) == encode(b)


def test_every_kind_round_trips_exactly(tmp_path) -> None:
    messages = small_run("r1")
    assert {m.kind for m in messages} == set(MESSAGE_TYPES)
    path = tmp_path / "run.mcap"
    write_recording(path, messages)
    reader = RecordingReader(path)
    back = list(reader.messages())
    assert reader.whole and reader.damage is None and not reader.invalid
    assert len(back) == len(messages)
    assert all(same(r.message, m) for r, m in zip(back, messages, strict=True))
    assert [r.log_time for r in back] == pytest.approx([m.sent_at for m in messages], abs=1e-6)
    (run,) = [data for name, data in reader.metadata if name == RUN_METADATA]
    assert run["run_id"] == "r1"
    assert json.loads(run["architecture"])["layer_sizes"] == [784, 4, 10]
    assert json.loads(run["hyperparameters"])["optimizer"] == "sgd"
    assert "numpy" in json.loads(run["recorder_versions"])


def test_mcaps_own_reader_reads_it_and_the_schemas_validate_every_message(tmp_path) -> None:
    path = tmp_path / "run.mcap"
    messages = small_run("r1")
    write_recording(path, messages)
    seen = []
    with open(path, "rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        assert summary.statistics.message_count == len(messages)
        assert {c.topic for c in summary.channels.values()} == set(MESSAGE_TYPES)
        for schema, channel, record in reader.iter_messages(log_time_order=False):
            assert schema is not None
            assert (schema.encoding, channel.message_encoding) == ("jsonschema", "json")
            payload = json.loads(record.data)
            jsonschema.validate(payload, json.loads(schema.data))
            seen.append((channel.topic, payload["seq"], record.sequence))
    assert seen == [(m.kind, m.seq, m.seq) for m in messages]


def test_the_schemas_refuse_what_the_models_refuse() -> None:
    sample = small_run("r1")[7]
    assert sample.kind == "sample"
    payload = json.loads(to_record(encode(sample)))
    schema = record_schema("sample")
    jsonschema.validate(payload, schema)
    for broken in (
        {**payload, "label": -1},
        {**payload, "surprise": 1},
        {**payload, "image": {**payload["image"], "frame": 2}},
        {k: v for k, v in payload.items() if k != "image"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_arrays_are_stored_as_bytes_not_number_lists(tmp_path) -> None:
    weights = next(m for m in small_run("r1") if m.kind == "model")
    record = to_record(encode(weights))
    raw = weights.parameters.nbytes
    assert raw * 4 / 3 < len(record) < raw * 4 / 3 + 1000  # base64, not "[0.123, ...]"
    assert encode(decode(to_frames("model", record))) == encode(weights)


def test_a_recording_in_progress_is_on_disk_within_the_flush_interval(tmp_path) -> None:
    path = tmp_path / "live.mcap"
    messages = small_run("r1")
    writer = RecordingWriter(path)
    try:
        for message in messages[:10]:
            writer.write(message)
        time.sleep(FLUSH_SECONDS * 1.2)
        writer.tick()
        reader = RecordingReader(path)
        back = [r.message for r in reader.messages()]
        assert len(back) == 10 and not reader.whole and reader.damage is None
        assert "not closed" in reader.describe_damage()
    finally:
        writer.close()


def test_a_cut_file_yields_every_whole_message_before_the_cut(tmp_path) -> None:
    path = tmp_path / "run.mcap"
    messages = small_run("r1", metrics=40)
    writer = RecordingWriter(path)
    ends = []
    for message in messages:
        writer.write(message)
        writer.flush()  # a chunk per message, so every cut point lands somewhere new
        ends.append(writer.size())
    writer.close()
    data = path.read_bytes()
    cut_path = tmp_path / "cut.mcap"
    for cut in range(ends[0] - 5, len(data), 997):
        cut_path.write_bytes(data[:cut])
        reader = RecordingReader(cut_path)
        back = [r.message for r in reader.messages()]
        whole = sum(1 for end in ends if end <= cut)
        assert len(back) >= whole, f"cut at {cut}"
        assert all(same(b, m) for b, m in zip(back, messages, strict=False))
        assert reader.whole == (cut == len(data))


def test_a_corrupt_chunk_ends_the_read_with_the_damage_named(tmp_path) -> None:
    path = tmp_path / "run.mcap"
    messages = small_run("r1", metrics=40)
    writer = RecordingWriter(path)
    for i, message in enumerate(messages):
        writer.write(message)
        if i == 20:
            writer.flush()
            middle = writer.size()
    writer.close()
    data = bytearray(path.read_bytes())
    data[middle + 200] ^= 0xFF  # inside the second chunk's compressed data
    path.write_bytes(bytes(data))
    reader = RecordingReader(path)
    back = list(reader.messages())
    assert len(back) == 21
    assert reader.damage and not reader.whole
    assert "damaged after 21 messages" in reader.describe_damage()


def test_a_message_that_breaks_the_contract_is_skipped_and_counted(tmp_path) -> None:
    path = tmp_path / "run.mcap"
    messages = small_run("r1")
    writer = RecordingWriter(path)
    for message in messages[:5]:
        writer.write(message)
    bad = json.loads(to_record(encode(messages[3])))
    bad["loss"] = "high"
    writer._writer.add_message(
        channel_id=writer._channels["metrics"], log_time=0, publish_time=0,
        data=json.dumps(bad).encode(),
    )  # fmt: skip
    for message in messages[5:]:
        writer.write(message)
    writer.close()
    reader = RecordingReader(path)
    back = list(reader.messages())
    assert len(back) == len(messages)
    assert reader.invalid == {"invalid": 1}


@pytest.mark.parametrize("content", [b"", b"not an mcap file at all", b"\x89MCAP0\r\n"[:5]])
def test_what_is_not_a_recording_gets_one_line(tmp_path, content: bytes) -> None:
    path = tmp_path / "x.mcap"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match="is not an MCAP recording"):
        list(RecordingReader(path).messages())
    with pytest.raises(RecordingError, match="no such recording"):
        RecordingReader(tmp_path / "missing.mcap")


def test_an_existing_file_is_never_overwritten(tmp_path) -> None:
    path = tmp_path / "run.mcap"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        RecordingWriter(path)
    assert path.read_bytes() == b"precious"


def test_splicing_arrays_into_the_json_gives_what_parsing_gives() -> None:
    from broker.recording.format import _to_record_parsed

    for message in small_run("r1"):
        frames = encode(message)
        assert json.loads(to_record(frames)) == json.loads(_to_record_parsed(frames))
    sample = next(m for m in small_run("r1") if m.kind == "sample")
    frames = encode(sample)
    spaced = [frames[0], frames[1].replace(b'{"frame":2,', b'{"frame": 2, '), *frames[2:]]
    assert encode(decode(spaced)) == frames  # another encoder's spacing is still valid ...
    assert encode(decode(to_frames("sample", to_record(spaced)))) == frames  # ... and recorded


def crafted_chunk(path, compression: str, data: bytes, declared: int) -> None:
    """A file whose one chunk claims ``declared`` bytes uncompressed."""
    from mcap.data_stream import RecordBuilder
    from mcap.records import Chunk
    from mcap.writer import CompressionType, Writer

    with open(path, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.NONE)
        writer.start(profile="mnist-live", library="test")
        builder = RecordBuilder()
        Chunk(
            message_start_time=0, message_end_time=0, uncompressed_size=declared,
            uncompressed_crc=0, compression=compression, data=data,
        ).write(builder)  # fmt: skip
        stream.write(builder.end())


@pytest.mark.parametrize(
    ("compression", "declared", "damage"),
    [
        ("zstd", 100, "declares 100 bytes but holds 101+"),
        ("zstd", 2**40, "larger than any recording makes"),
        ("lz4", 100, "chunks compressed with 'lz4'"),
    ],
)
def test_a_chunk_never_inflates_past_what_it_declares(
    tmp_path, compression: str, declared: int, damage: str
) -> None:
    import resource

    import zstandard

    bomb = zstandard.ZstdCompressor().compress(bytes(200 * 2**20))  # 200 MB of zeros, ~6 KB
    path = tmp_path / "bomb.mcap"
    crafted_chunk(path, compression, bomb, declared)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reader = RecordingReader(path)
    assert list(reader.messages()) == []
    assert damage in (reader.damage or "")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50, f"reading the file took {grown_mb:.0f} MB more"
