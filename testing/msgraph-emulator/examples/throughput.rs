//! Loopback throughput of the emulator with a plain concurrent client (reqwest, one shared connection pool).
//!
//! `cargo run --release -p msgraph-emulator --example throughput -- [SECONDS] [CONCURRENCY]`
//!
//! Measures, each for SECONDS (default 10) with CONCURRENCY workers (default 32; 4 for large files):
//! * small-file downloads: GET on pre-authenticated download URLs of 2 KiB files (requests/s);
//! * small-file downloads the Graph way: GET `/content` (302) then the download URL (files/s);
//! * item metadata: GET `/drives/{d}/items/{id}` (requests/s);
//! * large downloads: GET of a 256 MiB file (MB/s);
//! * startup time with `--generate 5000` and `--generate 100000`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]

use msgraph_emulator::Emulator;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

async fn run_for<F, Fut>(secs: u64, workers: usize, f: F) -> (u64, u64, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let f = Arc::new(f);
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let (f, count, bytes) = (f.clone(), count.clone(), bytes.clone());
        handles.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                let n = f(i).await;
                bytes.fetch_add(n, Ordering::Relaxed);
                count.fetch_add(1, Ordering::Relaxed);
                i += workers;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (
        count.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let emu = Emulator::builder()
        .seed(1)
        .download_url_lifetime_secs(86_400)
        .start()
        .await
        .unwrap();
    let ctl = emu.control();
    let drive = ctl.default_drive_id();
    let token = ctl
        .mint_access_token_for(
            &ctl.default_user_id(),
            &["Files.Read.All"],
            chrono::Duration::days(1),
        )
        .unwrap();
    let small: Vec<u8> = (0..2048u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut ids = Vec::new();
    for i in 0..1000 {
        ids.push(
            ctl.put_file(&drive, &format!("/bench/small-{i}.txt"), small.clone())
                .unwrap()
                .id,
        );
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let graph = emu.graph_url().to_string();
    let mut urls = Vec::new();
    for id in &ids {
        let v: serde_json::Value = http
            .get(format!(
                "{graph}/drives/{drive}/items/{id}?$select=id,@microsoft.graph.downloadUrl"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        urls.push(v["@microsoft.graph.downloadUrl"].as_str().unwrap().to_string());
    }
    let urls = Arc::new(urls);
    println!(
        "machine: {} cores; concurrency {conc}; {secs} s per measurement",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let (h, u) = (http.clone(), urls.clone());
    let (n, b, t) = run_for(secs, conc, move |i| {
        let (h, url) = (h.clone(), u[i % u.len()].clone());
        async move { h.get(url).send().await.unwrap().bytes().await.unwrap().len() as u64 }
    })
    .await;
    println!(
        "small downloads (2 KiB, download URL): {:.0} requests/s ({n} requests, {:.1} MB/s)",
        n as f64 / t,
        b as f64 / t / 1e6
    );

    let (h, ids2, g, d, tk) = (
        http.clone(),
        Arc::new(ids.clone()),
        graph.clone(),
        drive.clone(),
        token.clone(),
    );
    let (n, _, t) = run_for(secs, conc, move |i| {
        let (h, id, g, d, tk) = (
            h.clone(),
            ids2[i % ids2.len()].clone(),
            g.clone(),
            d.clone(),
            tk.clone(),
        );
        async move {
            let r = h
                .get(format!("{g}/drives/{d}/items/{id}/content"))
                .bearer_auth(&tk)
                .send()
                .await
                .unwrap();
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            h.get(loc).send().await.unwrap().bytes().await.unwrap().len() as u64
        }
    })
    .await;
    println!(
        "small downloads via /content 302 + download URL: {:.0} files/s ({:.0} requests/s)",
        n as f64 / t,
        2.0 * n as f64 / t
    );

    let (h, ids3, g, d, tk) = (
        http.clone(),
        Arc::new(ids.clone()),
        graph.clone(),
        drive.clone(),
        token.clone(),
    );
    let (n, _, t) = run_for(secs, conc, move |i| {
        let (h, id, g, d, tk) = (
            h.clone(),
            ids3[i % ids3.len()].clone(),
            g.clone(),
            d.clone(),
            tk.clone(),
        );
        async move {
            h.get(format!("{g}/drives/{d}/items/{id}"))
                .bearer_auth(&tk)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len() as u64
        }
    })
    .await;
    println!("item metadata GET: {:.0} requests/s", n as f64 / t);

    let big: Vec<u8> = (0..256u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let big_id = ctl.put_file(&drive, "/bench/large.bin", big).unwrap().id;
    let v: serde_json::Value = http
        .get(format!("{graph}/drives/{drive}/items/{big_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let big_url = v["@microsoft.graph.downloadUrl"].as_str().unwrap().to_string();
    for workers in [1usize, 4] {
        let (h, u) = (http.clone(), big_url.clone());
        let (n, b, t) = run_for(secs, workers, move |_| {
            let (h, u) = (h.clone(), u.clone());
            async move {
                let mut r = h.get(u).send().await.unwrap();
                let mut total = 0u64;
                while let Some(c) = r.chunk().await.unwrap() {
                    total += c.len() as u64;
                }
                total
            }
        })
        .await;
        println!(
            "large downloads (256 MiB, {workers} concurrent): {:.0} MB/s ({n} downloads)",
            b as f64 / t / 1e6
        );
    }
    let log = ctl.request_counts();
    println!("requests served: {}", log.counts.values().sum::<u64>());
    emu.shutdown().await;

    for n in [5000usize, 100_000] {
        let t = Instant::now();
        let e = Emulator::builder().seed(1).generate(n).start().await.unwrap();
        println!("startup with --generate {n}: {:.1} s", t.elapsed().as_secs_f64());
        e.shutdown().await;
    }
}
