//! What a flow declares about itself, read from its component at deploy.

/// Properties a flow declares about itself (the WIT `properties` record).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowProperties {
    /// Flow name.
    pub name: String,
    /// May another server resume the flow when its server dies?
    pub other_server_retry: bool,
    /// `true` for `begin_checkpoint = use`: retries resume after the last
    /// checkpoint; `false` (`not use`) starts them over.
    pub begin_checkpoint: bool,
    /// Automatic retries after a flow error.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub retry_interval_ms: u64,
    /// Growth of the delay per failed attempt (1.0 = constant).
    pub backoff_factor: f64,
    /// Cap on the delay.
    pub max_retry_interval_ms: Option<u64>,
    /// Resources the flow declares (`http://…`, `folder:/…`, `connection:…`).
    #[serde(default)]
    pub resources: Vec<String>,
    /// How long its finished requests are kept (`#[flow(retention = …)]`),
    /// ms; `None`: the server's default.
    #[serde(default)]
    pub retention_ms: Option<u64>,
}

impl Default for FlowProperties {
    /// The SPEC's defaults: stays on its server, resumes from the last
    /// checkpoint, 3 retries 10 s apart.
    fn default() -> Self {
        Self {
            name: String::new(),
            other_server_retry: false,
            begin_checkpoint: true,
            max_retries: 3,
            retry_interval_ms: 10_000,
            backoff_factor: 1.0,
            max_retry_interval_ms: None,
            resources: Vec::new(),
            retention_ms: None,
        }
    }
}

impl FlowProperties {
    /// Delay before the retry that follows `failures` failed attempts
    /// (1 for the first retry): `retry_interval × backoff^(failures − 1)`,
    /// capped by `max_retry_interval` and by [`MAX_RETRY_DELAY_MS`], so it
    /// never overflows the database's time arithmetic.
    pub fn retry_delay_ms(&self, failures: u32) -> i64 {
        // NaN, below 1 and infinite factors are clamped before use.
        let factor = if self.backoff_factor.is_nan() {
            1.0
        } else {
            self.backoff_factor.clamp(1.0, f64::MAX)
        };
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        // 0 × ∞ would be NaN: no interval is no delay, whatever the backoff.
        let delay = match self.retry_interval_ms {
            0 => 0.0,
            interval => interval as f64 * factor.powi(exponent),
        };
        let cap = self
            .max_retry_interval_ms
            .unwrap_or(u64::MAX)
            .min(MAX_RETRY_DELAY_MS as u64) as f64;
        // A float-to-integer cast saturates; `delay` is at most `cap` here.
        delay.min(cap) as i64
    }
}

/// The longest delay before a retry: a hundred years, far inside the range
/// of the database's millisecond timestamps.
pub const MAX_RETRY_DELAY_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// A version's stored properties could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("unreadable flow properties: {0}")]
pub struct PropertiesError(String);

impl FlowProperties {
    /// The properties as stored with a version.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("flow properties serialise")
    }

    /// Reads the properties stored with a version; the one place they are
    /// parsed.
    pub fn from_json(json: &str) -> Result<Self, PropertiesError> {
        serde_json::from_str(json).map_err(|e| PropertiesError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let properties = FlowProperties {
            name: "f".into(),
            other_server_retry: false,
            begin_checkpoint: true,
            max_retries: 5,
            retry_interval_ms: 100,
            backoff_factor: 2.0,
            max_retry_interval_ms: Some(500),
            resources: Vec::new(),
            retention_ms: None,
        };
        let delays: Vec<i64> = (1..=5).map(|n| properties.retry_delay_ms(n)).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    /// `retry_interval × backoff^n` overflowed and, cast to a signed delay,
    /// came out negative: the retry fired at once.
    #[test]
    fn a_huge_backoff_saturates_instead_of_retrying_at_once() {
        let properties = FlowProperties {
            name: "f".into(),
            other_server_retry: false,
            begin_checkpoint: true,
            max_retries: 1000,
            retry_interval_ms: u64::MAX / 2,
            backoff_factor: 1e300,
            max_retry_interval_ms: None,
            resources: Vec::new(),
            retention_ms: None,
        };
        for failures in [1, 2, 64, 1000, u32::MAX] {
            assert_eq!(properties.retry_delay_ms(failures), MAX_RETRY_DELAY_MS);
        }
        let nan = FlowProperties {
            backoff_factor: f64::NAN,
            retry_interval_ms: 100,
            ..properties
        };
        assert_eq!(nan.retry_delay_ms(40), 100);
    }
}
