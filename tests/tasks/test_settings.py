"""Pipeline settings: the YAML's training section is checked when it is read."""
from __future__ import annotations

import pytest

from tasks.settings import PIPELINE_SELECT_RULES, PipelineSettings


def test_the_shipped_config_serves_a_rule_the_pipeline_supports():
    assert PipelineSettings.from_env().training.select in PIPELINE_SELECT_RULES


def test_an_unknown_selection_rule_is_refused_with_the_known_ones(tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text("training:\n  select: knn_vote\n")
    with pytest.raises(ValueError, match="robust_min_cost"):
        PipelineSettings.from_env(config)
