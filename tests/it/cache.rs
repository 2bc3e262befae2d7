//! The cache over real Redis, its in-process fallback, and reconnection when
//! Redis comes back (through a TCP proxy the test can cut).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use impact_in::cache::{Cache, RedisStatus};
use redis::AsyncCommands;
use tokio::{net::TcpListener, sync::Mutex, task::JoinHandle};

const TTL: Duration = Duration::from_secs(60);

fn cache_for(url: &str) -> (Cache, String) {
    let config = crate::common::config(&[("REDIS_URL", url)]);
    let prefix = config.redis.key_prefix.clone();
    (Cache::new(&config.redis).unwrap(), prefix)
}

#[tokio::test]
async fn values_live_in_redis_under_the_prefix() {
    let (cache, prefix) = cache_for(&crate::common::redis_url());
    assert_eq!(cache.status().await, RedisStatus::Connected);
    cache.set("k", "v", TTL).await;
    assert_eq!(cache.get("k").await.as_deref(), Some("v"));

    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut direct = client.get_multiplexed_async_connection().await.unwrap();
    let stored: Option<String> = direct.get(format!("{prefix}k")).await.unwrap();
    assert_eq!(stored.as_deref(), Some("v"));
    let ttl: i64 = direct.ttl(format!("{prefix}k")).await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn with_redis_down_the_in_process_cache_serves() {
    let (cache, _) = cache_for("redis://127.0.0.1:1");
    assert_eq!(cache.status().await, RedisStatus::Disconnected);
    cache.set("k", "v", TTL).await;
    assert_eq!(cache.get("k").await.as_deref(), Some("v"));
    assert_eq!(cache.get("missing").await, None);
}

#[tokio::test]
async fn without_redis_url_the_cache_is_local_and_disabled() {
    let config = crate::common::config(&[("REDIS_URL", "")]);
    let cache = Cache::new(&config.redis).unwrap();
    assert_eq!(cache.status().await, RedisStatus::Disabled);
    cache.set("k", "v", TTL).await;
    assert_eq!(cache.get("k").await.as_deref(), Some("v"));
}

/// A TCP proxy in front of the real Redis that can drop every connection
/// and refuse new ones, then let them through again.
struct Switch {
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Switch {
    async fn start(target: String) -> (Self, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (accept_up, accept_links) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let target = target.clone();
                accept_links.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        (Self { up, links }, url)
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn the_cache_reconnects_by_itself_when_redis_returns() {
    let target = crate::common::redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let (switch, url) = Switch::start(target).await;
    let (cache, _) = cache_for(&url);
    assert_eq!(cache.status().await, RedisStatus::Connected);

    switch.cut().await;
    let mut down = false;
    for _ in 0..20 {
        if cache.status().await == RedisStatus::Disconnected {
            down = true;
            break;
        }
    }
    assert!(down, "the cut was not noticed");
    cache.set("written-while-down", "kept", TTL).await;

    switch.restore();
    let mut back = false;
    for _ in 0..50 {
        if cache.status().await == RedisStatus::Connected {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the cache did not reconnect");
    assert_eq!(
        cache.get("written-while-down").await.as_deref(),
        Some("kept")
    );
    cache.set("after", "redis", TTL).await;
    assert_eq!(cache.get("after").await.as_deref(), Some("redis"));
}
