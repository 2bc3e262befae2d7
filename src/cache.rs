//! A key-value cache in Redis with an in-process fallback.
//!
//! Redis is a fast path, never the source of truth: when it is unset, down or
//! slow, reads and writes go to an in-process moka cache and the caller never
//! sees an error. The Redis connection manager reconnects by itself once Redis
//! is back.

use std::time::{Duration, Instant};

use moka::{Expiry, future::Cache as LocalCache};
use redis::{AsyncCommands, aio::ConnectionManager, aio::ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::{ConfigError, RedisConfig};

/// Entries the in-process fallback keeps at most.
const LOCAL_CAPACITY: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedisStatus {
    Connected,
    Disconnected,
    Disabled,
}

#[derive(Clone)]
pub struct Cache {
    redis: Option<ConnectionManager>,
    local: LocalCache<String, (String, Duration)>,
    prefix: String,
    timeout: Duration,
}

struct PerEntryTtl;

impl Expiry<String, (String, Duration)> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &(String, Duration),
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

impl Cache {
    pub fn new(config: &RedisConfig) -> Result<Self, ConfigError> {
        let redis = match &config.url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url.expose_secret()).map_err(|_| ConfigError {
                    var: "REDIS_URL".into(),
                    problem: "not a valid Redis URL (redis://host:port/db)".into(),
                })?;
                // Few, short reconnection attempts per failed command: the
                // fallback serves meanwhile, and the next command tries again.
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(config.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map_err(|_| ConfigError {
                        var: "REDIS_URL".into(),
                        problem: "cannot build a Redis client for this URL".into(),
                    })?;
                Some(manager)
            }
        };
        Ok(Self {
            redis,
            local: LocalCache::builder()
                .max_capacity(LOCAL_CAPACITY)
                .expire_after(PerEntryTtl)
                .build(),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
        })
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        let key = self.key(key);
        if let Some(mut redis) = self.redis.clone()
            && let Some(Some(value)) = self.bounded(redis.get::<_, Option<String>>(&key)).await
        {
            return Some(value);
        }
        // A miss in Redis may still be a write made while Redis was down.
        self.local.get(&key).await.map(|(value, _)| value)
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) {
        let key = self.key(key);
        if let Some(mut redis) = self.redis.clone() {
            let stored = self
                .bounded(redis.set_ex::<_, _, ()>(&key, value, ttl.as_secs().max(1)))
                .await;
            if stored.is_some() {
                return;
            }
        }
        self.local.insert(key, (value.to_owned(), ttl)).await;
    }

    /// Forgets a key, in Redis and in the fallback.
    pub async fn remove(&self, key: &str) {
        let key = self.key(key);
        if let Some(mut redis) = self.redis.clone() {
            self.bounded(redis.del::<_, ()>(&key)).await;
        }
        self.local.invalidate(&key).await;
    }

    pub async fn status(&self) -> RedisStatus {
        let Some(mut redis) = self.redis.clone() else {
            return RedisStatus::Disabled;
        };
        match self.bounded(redis.ping::<String>()).await {
            Some(_) => RedisStatus::Connected,
            None => RedisStatus::Disconnected,
        }
    }

    /// A Redis call bounded by the configured timeout; any failure is `None`
    /// and logged at debug level only, since the fallback covers it.
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "redis unavailable; using the in-process cache");
                None
            }
            Err(_) => {
                tracing::debug!("redis timed out; using the in-process cache");
                None
            }
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}
