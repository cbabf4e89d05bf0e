//! [`Publisher`]: where per-minute counts go, as `[metrics] transport` says: PutMetricData, or embedded
//! metric format events sent with PutLogEvents into the log group's metrics stream (one per host: the
//! lines' stream name with [`METRICS_STREAM_SUFFIX`]).

use aws_config::SdkConfig;

use crate::config::{Config, MetricsTransport};
use crate::counter::Datum;
use crate::shutdown::{Aborted, Shutdown};
use crate::sink::{LogBatcher, LogsSink, MetricsSink, SinkStats, emf};

/// The metrics stream's name: the lines' stream name with this suffix.
pub const METRICS_STREAM_SUFFIX: &str = "-metrics";

/// See the module documentation.
#[derive(Debug)]
pub enum Publisher {
    PutMetricData(MetricsSink),
    Emf(Box<LogsSink>),
}

impl Publisher {
    /// The publisher `config` asks for; `stream` is the lines' stream name.
    pub fn new(sdk: &SdkConfig, config: &Config, stream: &str) -> anyhow::Result<Publisher> {
        Ok(match config.metrics.transport {
            MetricsTransport::PutMetricData => Publisher::PutMetricData(MetricsSink::new(sdk)),
            MetricsTransport::Emf => {
                let name = format!("{stream}{METRICS_STREAM_SUFFIX}");
                crate::sink::logs::check_stream_name(&name)
                    .map_err(|m| anyhow::anyhow!("the metrics stream {name:?} {m}"))?;
                Publisher::Emf(Box::new(LogsSink::with_stream_name(
                    sdk,
                    &config.logs,
                    name,
                )))
            }
        })
    }

    /// The sink's counters.
    pub fn stats(&self) -> std::sync::Arc<SinkStats> {
        match self {
            Publisher::PutMetricData(m) => m.stats(),
            Publisher::Emf(l) => l.stats(),
        }
    }

    /// Publishes `minutes` and returns how many datums were dropped (each dropped with an ERROR by the
    /// sinks: CloudWatch refuses them, they are not retried), or `Err(Aborted)` when shutdown aborted
    /// first (the minutes stay pending).
    pub async fn publish(
        &mut self,
        minutes: &[(i64, Vec<Datum>)],
        shutdown: &Shutdown,
    ) -> Result<usize, Aborted> {
        match self {
            Publisher::PutMetricData(sink) => Ok(sink.put(minutes, shutdown).await?.dropped),
            Publisher::Emf(sink) => {
                let mut batcher = LogBatcher::new();
                let mut batches = Vec::new();
                for (minute, datums) in minutes {
                    for event in emf::events(*minute, datums) {
                        batches.extend(batcher.push_message(minute.saturating_mul(1000), &event));
                    }
                }
                batches.extend(batcher.take());
                let mut dropped = 0;
                for batch in &batches {
                    dropped += sink.put(batch, shutdown).await?.not_stored().len();
                }
                Ok(dropped)
            }
        }
    }
}
