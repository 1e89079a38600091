"""Where a Vertex AI job's requests and answers go (pdbatch.backends._staging), without an emulator.

Uploading, loading and the pre-flight checks run against the emulators in test_vertex.py.
"""

from __future__ import annotations

from pathlib import Path

from pdbatch.backends._gcp import parse_uri
from pdbatch.backends._staging import count_lines, destination, group, table_name

RUN = "20261130-221500-abc123"


def test_gcs_answers_go_beside_the_requests_or_under_output():
    staging = parse_uri("gs://my-bucket/pdbatch/", "staging")
    beside = destination(staging, None, RUN, "")
    assert beside == {"predictions_format": "jsonl",
                      "gcs_destination": {"output_uri_prefix": f"gs://my-bucket/pdbatch/{RUN}/output/"}}
    out = destination(staging, parse_uri("gs://out-bucket/answers/", "output"), RUN, "part-002")
    assert out["gcs_destination"]["output_uri_prefix"] == f"gs://out-bucket/answers/{RUN}/part-002/"


def test_bigquery_tables_are_named_so_that_jobs_never_collide():
    staging = parse_uri("bq://p.ds", "staging")
    one = destination(staging, None, RUN, "part-001")["bigquery_destination"]["output_uri"]
    two = destination(staging, None, RUN, "part-002")["bigquery_destination"]["output_uri"]
    assert one == "bq://p.ds.pdbatch_20261130_221500_abc123_predictions_part_001" and one != two
    # a named output table gets the part as a suffix when a submission has several jobs
    named = parse_uri("bq://p.out.answers", "output")
    assert destination(staging, named, RUN, "")["bigquery_destination"]["output_uri"] == "bq://p.out.answers"
    assert destination(staging, named, RUN, "part-003")["bigquery_destination"]["output_uri"] == \
        "bq://p.out.answers_part_003"
    assert table_name(RUN, "", "requests") == "pdbatch_20261130_221500_abc123_requests"


def test_files_are_packed_in_order_into_jobs_within_the_limit(tmp_path: Path):
    files = []
    for i, n in enumerate([3, 4, 2, 5]):
        f = tmp_path / f"requests-{i}.jsonl"
        f.write_bytes(b"{}\n" * n)
        files.append(f)
    counts = [count_lines(f) for f in files]
    assert counts == [3, 4, 2, 5]
    assert group(files, counts, 7) == [([files[0], files[1]], 7), ([files[2], files[3]], 7)]
    assert group(files, counts, 5) == [([files[0]], 3), ([files[1]], 4), ([files[2]], 2), ([files[3]], 5)]
