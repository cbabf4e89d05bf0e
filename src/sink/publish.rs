//! [`Publisher`]: per-minute counts sent on their own, as `[metrics] transport` says: PutMetricData, or
//! embedded metric format events sent with PutLogEvents into the lines' stream. `sshwatch replay` publishes
//! through it; the daemon uses it for PutMetricData only (its EMF events ride in the lines' batches, see
//! [`crate::sink::emf::with_minutes`]).

use aws_config::SdkConfig;

use crate::config::{Config, MetricsTransport};
use crate::counter::Datum;
use crate::shutdown::{Aborted, Shutdown};
use crate::sink::{LogBatcher, LogsSink, MetricsSink, SinkStats, emf};

/// See the module documentation.
#[derive(Debug)]
pub enum Publisher {
    PutMetricData(MetricsSink),
    Emf(Box<LogsSink>),
}

impl Publisher {
    /// The publisher `config` asks for; `stream` is the lines' stream name.
    pub fn new(sdk: &SdkConfig, config: &Config, stream: &str) -> Publisher {
        match config.metrics.transport {
            MetricsTransport::PutMetricData => Publisher::PutMetricData(MetricsSink::new(sdk)),
            MetricsTransport::Emf => Publisher::Emf(Box::new(LogsSink::with_stream_name(
                sdk,
                &config.logs,
                stream.to_owned(),
            ))),
        }
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
