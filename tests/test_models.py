"""Model loading errors and the model part of the sample cache's key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from benchmark.models import MissingWeightsError, ModelBundle, from_pretrained, pipeline_class
from tests.conftest import compose


@pytest.mark.parametrize("ident", ["/nonexistent/sd15", "./no-such-folder", "~/no-such-folder", "not a/hub id!"])
def test_a_missing_folder_or_malformed_id_is_the_missing_weights_line(ident: str) -> None:
    """A local path that is not there is reported as missing weights (before, the hub client rejected it as a
    malformed repo id and every sample failed with that text)."""
    with pytest.raises(MissingWeightsError, match=f"^model.inpaint='{ident}': "):
        from_pretrained(pipeline_class("inpaint"), ident, "model.inpaint")


def test_model_resolution_is_part_of_the_cache_key(tmp_path: Path) -> None:
    """Outputs at another working resolution are not the cached ones (methods default to the model's)."""
    at_512 = ModelBundle(compose(["model=sd15"], tmp_path).model).describe()
    at_256 = ModelBundle(compose(["model=sd15", "model.resolution=256"], tmp_path).model).describe()
    assert at_512["resolution"] == "512" and at_256["resolution"] == "256"


def test_diffedit_pipeline_deprecation_notice_is_not_repeated_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """diffusers logs it on every build of the frozen pipeline; the README says it once instead."""
    from benchmark.models import pipeline_class

    cls = pipeline_class("diffedit")
    notice = logging.getLogger("diffusers.pipelines.pipeline_utils")
    with caplog.at_level(logging.WARNING, logger=notice.name):
        notice.warning(f"The {cls.__name__} has been deprecated and will not receive bug fixes ")
        notice.warning("The OtherPipeline has been deprecated and will not receive bug fixes ")
    assert [r.getMessage() for r in caplog.records] == [
        "The OtherPipeline has been deprecated and will not receive bug fixes "
    ]
