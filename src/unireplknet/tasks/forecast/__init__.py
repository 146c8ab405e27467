"""Time-series forecasting: the linear-head forecaster (:mod:`.linear`), Corrformer (:mod:`.corrformer`); ``forecast-*`` in :mod:`.cli`."""
from .. import lazy_exports

_EXPORTS = {
    "image_shape": "linear",
    "SeriesNormalizer": "linear",
    "TokenEmbedding": "linear",
    "UniRepLKNetForecaster": "linear",
    "naive_forecast": "linear",
    "seasonal_naive_forecast": "linear",
    "forecast_metrics": "linear",
    "ForecastTrainConfig": "linear",
    "ForecastResult": "linear",
    "TINY_FORECAST_MODEL_KWARGS": "linear",
    "ADVECTION_DEMO": "linear",
    "PAPER_GLOBAL_TEMP": "linear",
    "build_forecast_splits": "linear",
    "evaluate_forecaster": "linear",
    "evaluate_baselines": "linear",
    "CORRFORMER_PRESETS": "linear",
    "corrformer_defaults": "linear",
    "metrics_table": "linear",
    "build_forecast_model": "linear",
    "evaluate_run": "linear",
    "train_forecaster": "linear",
    "load_forecaster": "linear",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
