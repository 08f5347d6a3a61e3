use crate::common::*;
use msgraph_emulator::quickxorhash::quickxorhash;

async fn redirect_location(env: &Env, drive: &str, item: &str) -> String {
    let r = env.get(&format!("/drives/{drive}/items/{item}/content")).await;
    assert_eq!(r.status(), 302);
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn content_redirects_302_to_a_preauthenticated_download_url() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/doc.txt", "hello world").unwrap();
    let loc = redirect_location(&env, &env.drive, &f.id).await;
    assert!(loc.starts_with(&format!("{}/_download/", env.emu.base_url())));
    let item = env
        .get_json(&format!("/drives/{}/items/{}", env.drive, f.id))
        .await;
    assert!(
        item["@microsoft.graph.downloadUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/_download/", env.emu.base_url()))
    );
    env.shutdown().await;
}

#[tokio::test]
async fn download_url_needs_no_authorization_header() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/doc.txt", "hello world").unwrap();
    let loc = redirect_location(&env, &env.drive, &f.id).await;
    let r = env.http.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello world");
    assert!(env.ctl.authorization_leaks().is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn download_with_an_authorization_header_is_recorded_as_a_leak() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/doc.txt", "hello").unwrap();
    let loc = redirect_location(&env, &env.drive, &f.id).await;
    let r = env.http.get(&loc).bearer_auth(&env.token).send().await.unwrap();
    assert_eq!(r.status(), 200, "served anyway, but recorded");
    let leaks = env.ctl.authorization_leaks();
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0].scheme, "Bearer");
    let log = env.ctl.request_log();
    let download = log
        .entries
        .iter()
        .find(|e| e.path.starts_with("/_download/"))
        .unwrap();
    assert!(download.had_authorization);
    env.shutdown().await;
}

#[tokio::test]
async fn download_url_expires_after_minutes_of_emulator_time() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/doc.txt", "hello").unwrap();
    let loc = redirect_location(&env, &env.drive, &f.id).await;
    env.ctl.advance_clock(chrono::Duration::minutes(4));
    assert_eq!(env.http.get(&loc).send().await.unwrap().status(), 200);
    env.ctl.advance_clock(chrono::Duration::minutes(2));
    assert_eq!(env.http.get(&loc).send().await.unwrap().status(), 401);
    env.shutdown().await;
}

#[tokio::test]
async fn range_request_on_download_url_returns_206_with_content_range() {
    let env = env().await;
    let data: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
    let f = env.ctl.put_file(&env.drive, "/blob.bin", data.clone()).unwrap();
    let loc = redirect_location(&env, &env.drive, &f.id).await;
    let r = env
        .http
        .get(&loc)
        .header("Range", "bytes=0-1023")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-1023/2048");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..1024]);
    let r = env
        .http
        .get(&loc)
        .header("Range", "bytes=2000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2000-2047/2048");
    let r = env
        .http
        .get(&loc)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[2038..]);
    env.shutdown().await;
}

#[tokio::test]
async fn range_that_cannot_be_generated_is_ignored_or_refused() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/blob.bin", vec![1u8; 100]).unwrap();
    let loc = redirect_location(&env, &env.drive, &f.id).await;
    let r = env
        .http
        .get(&loc)
        .header("Range", "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "multi-range is ignored: full content");
    assert_eq!(r.bytes().await.unwrap().len(), 100);
    let r = env
        .http
        .get(&loc)
        .header("Range", "bytes=500-600")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */100");
    env.shutdown().await;
}

#[tokio::test]
async fn if_none_match_on_content_returns_304() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/doc.txt", "v1").unwrap();
    let r = env
        .http
        .get(env.url(&format!("/drives/{}/items/{}/content", env.drive, f.id)))
        .bearer_auth(&env.token)
        .header("if-none-match", &f.ctag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    env.ctl.put_file(&env.drive, "/doc.txt", "v2").unwrap();
    let r = env
        .http
        .get(env.url(&format!("/drives/{}/items/{}/content", env.drive, f.id)))
        .bearer_auth(&env.token)
        .header("if-none-match", &f.ctag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    env.shutdown().await;
}

#[tokio::test]
async fn quickxorhash_on_every_business_file_matches_the_bytes_served() {
    let env = env_with(builder().generate(40)).await;
    let (items, _, _) = env
        .delta_round(&format!("/drives/{}/root/delta", env.drive))
        .await;
    let files: Vec<_> = items.iter().filter(|i| i.get("file").is_some()).collect();
    assert_eq!(files.len(), 40);
    for f in files {
        let hashes = f["file"]["hashes"].as_object().unwrap();
        assert!(
            hashes.get("sha1Hash").is_none(),
            "business drives publish quickXorHash only"
        );
        let url = f["@microsoft.graph.downloadUrl"].as_str().unwrap();
        let bytes = env.http.get(url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, f["size"].as_u64().unwrap());
        assert_eq!(hashes["quickXorHash"], quickxorhash(&bytes));
    }
    env.shutdown().await;
}

#[tokio::test]
async fn personal_drive_files_carry_sha1_and_quickxorhash() {
    let mut env = env().await;
    let d = env.act_as_personal_drive_owner("Pat");
    let f = env.ctl.put_file(&d, "/hello.txt", "hello world").unwrap();
    let item = env.get_json(&format!("/drives/{d}/items/{}", f.id)).await;
    assert_eq!(
        item["file"]["hashes"]["quickXorHash"],
        "aCgDG9jwBhDc4Q1yawMZAAAAAAA="
    );
    assert_eq!(
        item["file"]["hashes"]["sha1Hash"],
        "2AAE6C35C94FCFB415DBE95F408B9CE91EE846ED"
    );
    env.shutdown().await;
}
