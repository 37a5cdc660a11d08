"""The slack_export source passes the source contract on the bundled sample, as shipped (a zip)
and unzipped, and reads both identically."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from slack_export_builders import zip_dir

from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Message, Thread
from doppelkit.testing.contracts import SourceContract
from doppelkit_slack.sources.export import SAMPLE_WORKSPACE, SlackExportSource


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(SAMPLE_WORKSPACE) as zf:
        zf.extractall(target)  # our own archive: safe to extract
    return target


class TestSampleZip(SourceContract):
    @pytest.fixture
    def source(self, run_context: RunContext) -> SlackExportSource:
        return SlackExportSource(SlackExportSource.Config(), run_context)  # path: null = the sample


class TestSampleDirectory(SourceContract):
    @pytest.fixture
    def source(self, run_context: RunContext, sample_dir: Path) -> SlackExportSource:
        return SlackExportSource(SlackExportSource.Config(path=sample_dir), run_context)


def _read(path: Path | None, run_context: RunContext) -> tuple[list[dict], DatasetReport]:
    report = DatasetReport()
    source = SlackExportSource(SlackExportSource.Config(path=path), run_context)
    return [t.model_dump() for t in source.threads(report)], report


def test_zip_and_folder_read_the_same(run_context: RunContext, sample_dir: Path, tmp_path: Path) -> None:
    from_dir, dir_report = _read(sample_dir, run_context)
    from_zip, zip_report = _read(SAMPLE_WORKSPACE, run_context)
    # Re-zipped exports often wrap everything in one top-level folder.
    wrapped = zip_dir(sample_dir, tmp_path / "wrapped.zip", prefix="Lanternfish Slack export/")
    from_wrapped, _ = _read(wrapped, run_context)
    assert from_dir == from_zip == from_wrapped
    assert dir_report.drops == zip_report.drops


def test_fast_built_models_equal_validated_ones(run_context: RunContext) -> None:
    source = SlackExportSource(SlackExportSource.Config(), run_context)
    for thread in source.threads(DatasetReport()):
        assert Thread.model_validate(thread.model_dump()) == thread
        for message in thread.messages:
            assert Message.model_validate(message.model_dump()) == message
        thread.model_copy(update={"kind": "session"})  # pydantic machinery works on them


def test_config_rejects_unsafe_team_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="team"):
        SlackExportSource.Config(team="../escape")
    with pytest.raises(ValueError):
        SlackExportSource.Config.model_validate({"include_dms": True})
    with pytest.raises(ValueError):
        SlackExportSource.Config(max_uncompressed_bytes=0)
