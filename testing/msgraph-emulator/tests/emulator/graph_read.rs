use crate::common::*;

#[tokio::test]
async fn me_returns_the_signed_in_user() {
    let env = env().await;
    let me = env.get_json("/me").await;
    assert_eq!(me["id"], env.user);
    assert_eq!(me["displayName"], "Adele Vance");
    assert_eq!(me["userPrincipalName"], "adele.vance@contoso.onmicrosoft.com");
    env.shutdown().await;
}

#[tokio::test]
async fn me_drive_and_me_drives_return_the_default_business_drive() {
    let env = env().await;
    let d = env.get_json("/me/drive").await;
    assert_eq!(d["id"], env.drive);
    assert_eq!(d["driveType"], "business");
    assert!(d["id"].as_str().unwrap().starts_with("b!"));
    assert_eq!(d["owner"]["user"]["id"], env.user);
    let list = env.get_json("/me/drives").await;
    assert_eq!(list["value"][0]["id"], env.drive);
    let by_id = env.get_json(&format!("/drives/{}", env.drive)).await;
    assert_eq!(by_id["id"], env.drive);
    let by_user = env.get_json(&format!("/users/{}/drive", env.user)).await;
    assert_eq!(by_user["id"], env.drive);
    env.shutdown().await;
}

#[tokio::test]
async fn item_ids_have_business_and_personal_shapes() {
    let mut env = env().await;
    let f = env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    assert_eq!(f.id.len(), 34);
    assert!(f.id.starts_with("01"));
    assert!(f.id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    assert_eq!(env.drive.len(), 66);
    let pd = env.act_as_personal_drive_owner("Pat Personal");
    assert_eq!(pd.len(), 16);
    let pf = env.ctl.put_file(&pd, "/b.txt", "y").unwrap();
    let (prefix, num) = pf.id.split_once('!').unwrap();
    assert_eq!(prefix, pd.to_uppercase());
    assert!(num.parse::<u64>().is_ok());
    let personal = env.get_json(&format!("/drives/{pd}")).await;
    assert_eq!(personal["driveType"], "personal");
    env.shutdown().await;
}

#[tokio::test]
async fn children_are_paged_with_top_and_next_link() {
    let env = env().await;
    for i in 0..7 {
        env.ctl
            .put_file(&env.drive, &format!("/Many/f{i}.txt"), format!("file {i}"))
            .unwrap();
    }
    let mut url = format!("/drives/{}/root:/Many:/children?$top=3", env.drive);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = env.get_json(&url).await;
        pages += 1;
        let v = page["value"].as_array().unwrap();
        assert!(v.len() <= 3);
        seen.extend(names(v));
        match page["@odata.nextLink"].as_str() {
            Some(n) => {
                assert!(n.starts_with(env.emu.graph_url()));
                url = n.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("f{i}.txt")).collect::<Vec<_>>());
    env.shutdown().await;
}

#[tokio::test]
async fn item_by_path_addressing_resolves_root_colon_paths() {
    let env = env().await;
    let f = env
        .ctl
        .put_file(&env.drive, "/Team Docs/Plan 2025.txt", "plan")
        .unwrap();
    let item = env
        .get_json(&format!(
            "/drives/{}/root:/Team%20Docs/Plan%202025.txt",
            env.drive
        ))
        .await;
    assert_eq!(item["id"], f.id);
    let item = env.get_json("/me/drive/root:/Team%20Docs/Plan%202025.txt:").await;
    assert_eq!(item["id"], f.id);
    let folder = env.ctl.item_by_path(&env.drive, "/Team Docs").unwrap();
    let rel = env
        .get_json(&format!(
            "/drives/{}/items/{}:/Plan%202025.txt:",
            env.drive, folder.id
        ))
        .await;
    assert_eq!(rel["id"], f.id);
    env.shutdown().await;
}

#[tokio::test]
async fn children_listing_includes_parent_reference_path() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/Docs/Sub/x.txt", "x").unwrap();
    let page = env
        .get_json(&format!("/drives/{}/root:/Docs/Sub:/children", env.drive))
        .await;
    let item = &page["value"][0];
    assert_eq!(
        item["parentReference"]["path"],
        format!("/drives/{}/root:/Docs/Sub", env.drive)
    );
    assert_eq!(item["parentReference"]["driveType"], "business");
    assert!(item["cTag"].is_string());
    assert!(item["eTag"].is_string());
    assert_eq!(item["file"]["mimeType"], "text/plain");
    env.shutdown().await;
}

#[tokio::test]
async fn unknown_item_returns_item_not_found_in_graph_error_shape() {
    let env = env().await;
    let r = env
        .http
        .get(env.url(&format!("/drives/{}/items/01NOPE", env.drive)))
        .bearer_auth(&env.token)
        .header("client-request-id", "my-correlation")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "itemNotFound");
    let inner = &body["error"]["innerError"];
    assert_eq!(inner["client-request-id"], "my-correlation");
    assert!(inner["request-id"].is_string());
    assert!(inner["date"].as_str().unwrap().starts_with("2025-03-01T09:00:00"));
    env.shutdown().await;
}

#[tokio::test]
async fn graph_responses_carry_request_id_and_standard_headers() {
    let env = env().await;
    let r = env.get("/me").await;
    for h in [
        "request-id",
        "client-request-id",
        "x-ms-ags-diagnostic",
        "date",
        "strict-transport-security",
    ] {
        assert!(r.headers().contains_key(h), "missing {h}");
    }
    assert_eq!(r.headers()["date"], "Sat, 01 Mar 2025 09:00:00 GMT");
    env.shutdown().await;
}

#[tokio::test]
async fn missing_bearer_token_is_rejected_with_invalid_authentication_token() {
    let env = env().await;
    let r = env.http.get(env.url("/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    env.shutdown().await;
}

#[tokio::test]
async fn unknown_access_token_is_rejected_with_401() {
    let env = env().await;
    let r = env
        .http
        .get(env.url("/me"))
        .bearer_auth("eyJ.fake.token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    env.shutdown().await;
}

#[tokio::test]
async fn expired_access_token_is_rejected_with_401() {
    let env = env().await;
    assert_eq!(env.get("/me").await.status(), 200);
    env.ctl.advance_clock(chrono::Duration::minutes(61));
    let r = env.get("/me").await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(
        body["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    env.shutdown().await;
}
