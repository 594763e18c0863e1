//! Prometheus metrics (`GET /metrics`, text format).
//!
//! Counters and histograms are this process's (uploads it received, conversions its
//! workers ran); the job gauges are read from the database at scrape time, so every
//! process reports the same queue whatever runs where.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::JobStatus;
use crate::queue::Queue;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// The metrics of one process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub jobs: Family<StatusLabel, Gauge>,
    pub queue_depth: Gauge,
    pub database_up: Gauge,
    pub upload_bytes: Counter,
    pub uploads: Family<OutcomeLabel, Counter>,
    pub conversions: Family<OutcomeLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("yolots");
        let jobs = Family::<StatusLabel, Gauge>::default();
        registry.register("jobs", "Jobs by status", jobs.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Queued jobs claimable now",
            queue_depth.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "database_up",
            "Whether the last scrape reached the database",
            database_up.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register(
            "upload_bytes",
            "Bytes of checkpoints received",
            upload_bytes.clone(),
        );
        let uploads = Family::<OutcomeLabel, Counter>::default();
        registry.register("uploads", "Uploads by outcome", uploads.clone());
        let conversions = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.5, 2.0, 14))
        });
        registry.register(
            "conversion_duration_seconds",
            "Wall time of conversion attempts run by this process's workers, by outcome",
            conversions.clone(),
        );
        Self {
            registry: Arc::new(registry),
            jobs,
            queue_depth,
            database_up,
            upload_bytes,
            uploads,
            conversions,
        }
    }

    pub fn upload(&self, outcome: &str) {
        self.uploads
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn conversion(&self, outcome: &str, seconds: f64) {
        self.conversions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .observe(seconds);
    }

    /// Reads the job gauges from the database (when `queue` is given) and encodes all.
    pub async fn render(&self, queue: Option<&Queue>) -> String {
        if let Some(queue) = queue {
            match queue.counts().await {
                Ok((counts, depth)) => {
                    for status in JobStatus::ALL {
                        let n = counts
                            .iter()
                            .find(|(s, _)| *s == status)
                            .map_or(0, |(_, n)| *n);
                        self.jobs
                            .get_or_create(&StatusLabel {
                                status: status.as_str().to_owned(),
                            })
                            .set(n);
                    }
                    self.queue_depth.set(depth);
                    self.database_up.set(1);
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics: cannot read job counts");
                    self.database_up.set(0);
                }
            }
        }
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_the_text_format() {
        let metrics = Metrics::new();
        metrics.upload_bytes.inc_by(42);
        metrics.upload("accepted");
        metrics.conversion("succeeded", 3.0);
        let text = metrics.render(None).await;
        assert!(text.contains("yolots_upload_bytes_total 42"), "{text}");
        assert!(text.contains("yolots_uploads_total{outcome=\"accepted\"} 1"));
        assert!(text.contains("yolots_conversion_duration_seconds_count{outcome=\"succeeded\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
