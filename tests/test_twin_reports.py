"""The stored reports' listing (service/twin_reports.py) without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.service import twin_reports


def test_a_report_removed_while_it_is_listed_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("kept", "gone"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.html").write_text("<p>r</p>", encoding="utf-8")
    real = twin_reports.report_file

    def vanishing(root: Path, name: str, file: str) -> Path | None:
        found = real(root, name, file)
        if name == "gone" and found is not None:
            found.unlink()  # removed after it was found, before its size is read
        return found

    monkeypatch.setattr(twin_reports, "report_file", vanishing)
    assert [r.name for r in twin_reports.list_reports(tmp_path)] == ["kept"]
