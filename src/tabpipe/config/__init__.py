"""Loading and checking the YAML configuration: ``pipeline.yaml``, ``model.yaml`` and the schema.

Everything is validated before any stage runs; any problem becomes one ``ConfigError`` naming the
file and the dotted key. ``sections`` declares pipeline.yaml's sections, ``models`` model.yaml's
candidates, ``load`` reads the files into ``Settings``. The public names are re-exported here.
"""
from tabpipe.config.load import Settings, load_settings
from tabpipe.config.models import SPACES, Candidate, ModelsConfig, check_candidate_classes, import_class, parse_space
from tabpipe.config.sections import (
    METRIC_SPELLINGS,
    AcrossSplit,
    AlertsSection,
    ConceptSection,
    DriftSection,
    EvaluationSection,
    ExecutorSection,
    IntegritySection,
    InvalidRows,
    LeakageSection,
    Metric,
    MetricSetting,
    MonitoringSection,
    MultivariateSection,
    PipelineConfig,
    Resampling,
    RulesSection,
    RunSection,
    ServeSection,
    SplitSection,
    TrainingSection,
    TransformationSection,
    ValidationSection,
    canonical_metric,
)

__all__ = [
    "METRIC_SPELLINGS",
    "SPACES",
    "AcrossSplit",
    "AlertsSection",
    "Candidate",
    "ConceptSection",
    "DriftSection",
    "EvaluationSection",
    "ExecutorSection",
    "IntegritySection",
    "InvalidRows",
    "LeakageSection",
    "Metric",
    "MetricSetting",
    "ModelsConfig",
    "MonitoringSection",
    "MultivariateSection",
    "PipelineConfig",
    "Resampling",
    "RulesSection",
    "RunSection",
    "ServeSection",
    "Settings",
    "SplitSection",
    "TrainingSection",
    "TransformationSection",
    "ValidationSection",
    "canonical_metric",
    "check_candidate_classes",
    "import_class",
    "load_settings",
    "parse_space",
]
