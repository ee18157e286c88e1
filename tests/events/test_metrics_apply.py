"""hub_apply's `metrics` section refuses a malformed document with the path of what is wrong."""

import pytest

from events.models import Metric
from hub.config_apply import ConfigError, config_apply

pytestmark = pytest.mark.django_db


def _doc(metrics):
    return {
        "workspace": "Acme",
        "apps": [{"name": "Upsell", "plans": [{"name": "Basic"}], "metrics": metrics}],
    }


GPU = {"name": "GPU", "event_name": "gpu_used"}


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"name": "GPU"}, r"^\$\.apps\[0\]\.metrics: must be a list of metrics$"),
        (["GPU"], r"^\$\.apps\[0\]\.metrics\[0\]: each metric must be an object$"),
        (
            [{**GPU, "colour": 1, "bogus": 2}],
            r"^\$\.apps\[0\]\.metrics\[0\]: unknown key\(s\) bogus, colour$",
        ),
        ([{**GPU, "limits": {}}], r"^\$\.apps\[0\]\.metrics\[0\]\.limits: must be a list$"),
        (
            [{**GPU, "limits": [{"plan": "Basic", "cap": 1}]}],
            r'^\$\.apps\[0\]\.metrics\[0\]\.limits\[0\]: must be \{"plan", "limit", "thresholds"\}$',
        ),
        (
            [{**GPU, "limits": [["Basic"]]}],
            r'^\$\.apps\[0\]\.metrics\[0\]\.limits\[0\]: must be \{"plan", "limit", "thresholds"\}$',
        ),
        (
            [{**GPU, "limits": [{"plan": "Gold", "limit": 5}]}],
            r"^\$\.apps\[0\]\.metrics\[0\]\.limits\[0\]\.plan: no plan named 'Gold' in this app$",
        ),
        (
            [{**GPU, "limits": [{"plan": "Basic", "limit": -1}]}],
            r"^\$\.apps\[0\]\.metrics\[0\]\.limits\[0\]: limit must be a number greater than zero\.$",
        ),
    ],
)
def test_a_malformed_metrics_section_names_its_path(metrics, message):
    with pytest.raises(ConfigError, match=message):
        config_apply(document=_doc(metrics))
    assert not Metric.objects.exists()  # all or nothing
