"""The two ways ingestion fails: one bad file (skipped and reported) or the whole run (an error).

:class:`BadFile` is raised by the decoders for a single file and caught by ``prepare``, which records
its ``code`` and ``detail`` in ``data/ingest_report.json``; :class:`IngestError` stops ``cspine prepare``
with a message naming the folder, the config key or the report to read.
"""

from __future__ import annotations

from cspine.errors import StageError

#: Reason codes a skipped file can carry in ingest_report.json.
REASONS = {
    "empty": "zero-byte file",
    "not_an_image": "contents are not PNG, JPEG or DICOM",
    "wrong_extension": "the file's extension does not match its contents",
    "truncated": "the file ends before its image data does",
    "unreadable_dicom": "DICOM that cannot be parsed or has no decodable pixel data",
    "unreadable_image": "PNG/JPEG that the decoder rejects",
    "decompression_bomb": "more pixels than data.max_image_pixels",
    "unsupported": "an image kind the pipeline does not handle",
}


class BadFile(Exception):
    """One input file cannot be used; ``code`` is a key of :data:`REASONS`."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in REASONS:
            raise ValueError(f"unknown reason code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class IngestError(StageError):
    """`cspine prepare` cannot go on (missing folder, too many bad files, nothing usable)."""
