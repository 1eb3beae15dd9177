//! Retention of the topics d06 rebuilds from. A shard rebuilt on an empty
//! disk (a lost disk, a new instance taking the shard) replays its facts
//! partition from the beginning, and a new deployment replays the source
//! topics: whatever the broker has deleted is gone from the figures. d06
//! cannot fix a broker's retention; it says so at start, loudly.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use super::{KafkaConfig, SourceError};

/// A topic that does not keep its whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finite {
    /// The topic.
    pub topic: String,
    /// Which configuration limits it (`retention.ms`, `retention.bytes`) and its value.
    pub limit: (String, i64),
    /// The facts topic (shards rebuild from it) or a source topic.
    pub facts: bool,
}

impl Finite {
    /// What the operator should read.
    pub fn message(&self) -> String {
        let (key, value) = &self.limit;
        let what = if key == "retention.ms" {
            format!("{key} = {value} ({:.1} days)", *value as f64 / 86_400_000.0)
        } else {
            format!("{key} = {value}")
        };
        if self.facts {
            format!(
                "the facts topic {} does not keep its whole history ({what}): a shard rebuilt on an empty disk, or \
                 taken over by a new instance, loses every fact the broker has deleted. Set retention.ms = -1 and \
                 retention.bytes = -1 on it",
                self.topic
            )
        } else {
            format!(
                "the source topic {} does not keep its whole history ({what}): a new deployment (or a new facts \
                 topic) replays only what is left. Keep the campaign's whole history (retention.ms = -1), or \
                 never lose the facts topic",
                self.topic
            )
        }
    }
}

/// The topics among the facts topic and the four source topics whose
/// retention is finite. Errors when the broker cannot describe them.
pub async fn finite_retention(config: &KafkaConfig) -> Result<Vec<Finite>, SourceError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let facts = config.topics.facts.as_str();
    let mut names = vec![facts];
    names.extend(config.topics.sources());
    let specs: Vec<ResourceSpecifier<'_>> = names.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let described = admin
        .describe_configs(specs.iter(), &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))))
        .await?;
    let mut out = Vec::new();
    for (name, result) in names.iter().zip(described) {
        // A source topic that does not exist yet has no retention to judge.
        let Ok(resource) = result else { continue };
        for key in ["retention.ms", "retention.bytes"] {
            let value = resource.get(key).and_then(|e| e.value.as_deref()).and_then(|v| v.parse::<i64>().ok());
            if let Some(v) = value.filter(|v| *v >= 0) {
                out.push(Finite { topic: (*name).to_owned(), limit: (key.to_owned(), v), facts: *name == facts });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_is_lost_and_what_to_set() {
        let f = Finite { topic: "d06.facts.v1".into(), limit: ("retention.ms".into(), 604_800_000), facts: true };
        let m = f.message();
        assert!(
            m.starts_with(
                "the facts topic d06.facts.v1 does not keep its whole history (retention.ms = 604800000 (7.0 days))"
            ),
            "{m}"
        );
        assert!(m.contains("retention.ms = -1"), "{m}");
        let s = Finite { topic: "d06.cccd.v1".into(), limit: ("retention.bytes".into(), 1 << 30), facts: false };
        assert!(s
            .message()
            .contains("source topic d06.cccd.v1 does not keep its whole history (retention.bytes = 1073741824)"));
    }
}
