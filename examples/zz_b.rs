use redlock::{LockManager, LockOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNLOCK: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

fn main() {
    let url = std::env::args().nth(1).unwrap();
    let mode = std::env::args().nth(2).unwrap();
    let conns: usize = std::env::args().nth(3).map_or(2, |c| c.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = redis::Client::open(url.as_str()).unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        let locks = LockManager::builder(url.as_str())
            .connections(conns)
            .build()
            .unwrap();
        locks.ping().await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let unlock = Arc::new(redis::Script::new(UNLOCK));
        let start = Instant::now();
        let mut tasks = vec![];
        for t in 0..32 {
            let stop = stop.clone();
            let unlock = unlock.clone();
            let mut conn = conn.clone();
            let locks = locks.clone();
            let mode = mode.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("bench:b{t}");
                let token = format!("tok{t}");
                let mut n = 0u64;
                let opts = LockOptions::new(Duration::from_secs(10));
                while !stop.load(Ordering::Relaxed) {
                    if mode == "raw" {
                        let taken: Option<String> = redis::cmd("SET")
                            .arg(&key)
                            .arg(&token)
                            .arg("NX")
                            .arg("PX")
                            .arg(10000)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                        assert!(taken.is_some());
                        let mut inv = unlock.key(&key);
                        inv.arg(&token);
                        let r: i64 = inv.invoke_async(&mut conn).await.unwrap();
                        assert_eq!(r, 1);
                    } else {
                        let g = locks.acquire_with(&key, &opts).await.unwrap();
                        g.release().await.unwrap();
                    }
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        eprintln!(
            "{mode}: {total} cycles, {:.0}/s",
            total as f64 / start.elapsed().as_secs_f64()
        );
    });
}
