from netspectra.offline.warmup import _frame, _pcap, _pcapng, warm_up


def test_warm_up_reads_both_formats(tmp_path) -> None:
    from netspectra.capture.reader import CaptureReader

    for name, data in (("a.pcap", _pcap(_frame())), ("a.pcapng", _pcapng(_frame()))):
        (tmp_path / name).write_bytes(data)
        reader = CaptureReader(tmp_path / name)
        (batch,) = list(reader)
        assert len(batch) == 1 and int(batch.dst_port[0]) == 80 and reader.stats.by_status["ok"] == 1
    assert warm_up() >= 0.0
